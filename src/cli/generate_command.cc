// gemmax generate: greedy generation from a prompt, streamed as text or printed as one JSON object.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/loaded_model.h"

namespace gemmax::cli {
namespace {

struct GenerateOptions {
  std::string model, prompt_ids, prompt;
  int max_tokens = 64;
  int threads = 0;
  bool json = false;
};

constexpr int64_t kPrefillChunk = 512;  // bounds activation memory for long prompts

int32_t argmax(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

// Runs `tokens` through the model in chunks; returns the logits of the last token.
std::vector<float> feed(Gemma3Model& model, PagedKVCache& cache, SeqId seq,
                        const std::vector<int32_t>& tokens) {
  Gemma3Outputs out;
  for (size_t start = 0; start < tokens.size(); start += kPrefillChunk) {
    const size_t end = std::min(tokens.size(), start + kPrefillChunk);
    Gemma3Inputs in;
    in.add_row(seq, std::vector<int32_t>(tokens.begin() + start, tokens.begin() + end));
    out = model.execute(in, cache);
  }
  return std::vector<float>(out.row(0), out.row(0) + out.vocab_size);
}

void run(const GenerateOptions& o) {
  if (o.max_tokens < 0) throw std::invalid_argument("--max-tokens must not be negative");
  LoadedModel m = load_model(o.model, o.threads, true);
  const Gemma3Config& cfg = m.model->config();
  const std::vector<int32_t> prompt = prompt_tokens(m, o.prompt_ids, o.prompt);
  if (static_cast<int64_t>(prompt.size()) >= cfg.max_position_embeddings)
    throw std::invalid_argument(fmt::format("the prompt has {} tokens; the context is {}", prompt.size(),
                                            cfg.max_position_embeddings));
  const int64_t budget = std::min<int64_t>(static_cast<int64_t>(prompt.size()) + o.max_tokens,
                                           cfg.max_position_embeddings);
  PagedKVCache cache = single_sequence_cache(*m.model, budget);
  const SeqId seq = cache.add_sequence();
  StreamingDetokenizer stream(*m.tokenizer);
  std::vector<int32_t> generated;
  std::string finish_reason = "length";
  std::vector<float> logits = feed(*m.model, cache, seq, prompt);
  while (static_cast<int>(generated.size()) < o.max_tokens) {
    const int32_t next = argmax(logits.data(), static_cast<int64_t>(logits.size()));
    const auto& stops = cfg.eos_token_ids;
    if (std::find(stops.begin(), stops.end(), next) != stops.end() || m.tokenizer->is_stop(next)) {
      finish_reason = "stop";
      break;
    }
    generated.push_back(next);
    if (!o.json) {
      fmt::print("{}", stream.push(next));
      std::fflush(stdout);
    }
    if (cache.length(seq) + 1 >= cfg.max_position_embeddings) break;  // context full: "length"
    if (static_cast<int>(generated.size()) < o.max_tokens)
      logits = feed(*m.model, cache, seq, {next});
  }
  if (o.json) {
    nlohmann::json j{{"ids", generated}, {"text", m.tokenizer->decode(generated)},
                     {"finish_reason", finish_reason}};
    fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    fmt::print("{}\n", stream.finish());
  }
}

}  // namespace

void register_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt (greedy)");
  cmd->add_option("--model", o->model, "HF directory or .gguf file (default: the Gemma 3 270M GGUF)");
  cmd->add_option("--prompt-ids", o->prompt_ids, "Comma-separated token ids, e.g. 2,818,5279");
  cmd->add_option("--prompt", o->prompt, "Prompt text (tokenized with <bos>)");
  cmd->add_option("--max-tokens", o->max_tokens, "Most tokens to generate")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  cmd->add_flag("--json", o->json, R"(Print {"ids":[...],"text":"...","finish_reason":"..."})");
  cmd->callback([o] { run(*o); });
}

}  // namespace gemmax::cli
