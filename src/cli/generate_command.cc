// gemmax generate: generation from a prompt through the pipeline Engine, streamed as text or
// printed as one JSON object.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/loaded_model.h"
#include "cli/sampling_flags.h"
#include "pipeline/engine.h"

namespace gemmax::cli {
namespace {

struct GenerateOptions {
  std::string model, prompt_ids, prompt;
  int max_tokens = 64;
  int threads = 0;
  std::string kv_dtype = "f16";
  bool json = false;
  bool stream = false;
  SamplingParams sampling;
  uint64_t seed = 0;
};

constexpr int64_t kPrefillChunk = 512;  // bounds activation memory for long prompts

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void run(const GenerateOptions& o) {
  if (o.max_tokens < 0) throw std::invalid_argument("--max-tokens must not be negative");
  LoadedModel m = load_model(o.model, o.threads, true);
  const Gemma3Config& cfg = m.model->config();
  const std::vector<int32_t> prompt = prompt_tokens(m, o.prompt_ids, o.prompt);
  if (static_cast<int64_t>(prompt.size()) >= cfg.max_position_embeddings)
    throw std::invalid_argument(fmt::format("the prompt has {} tokens; the context is {}",
                                            prompt.size(), cfg.max_position_embeddings));
  const int64_t budget = std::min<int64_t>(static_cast<int64_t>(prompt.size()) + o.max_tokens,
                                           cfg.max_position_embeddings);
  EngineOptions eo;
  eo.max_seqs = 1;
  eo.max_batch_tokens = kPrefillChunk;
  eo.kv_dtype = parse_kv_dtype(o.kv_dtype);
  eo.kv_pages = single_sequence_cache(*m.model, budget, eo.kv_dtype).total_pages();
  Engine engine(*m.model, m.tokenizer.get(), eo);
  SamplingParams p = o.sampling;
  p.max_tokens = o.max_tokens;
  std::vector<int32_t> ids;
  std::string text;
  FinishReason finish = FinishReason::kNone;
  engine.submit({prompt, p, 0}, [&](const GenerationEvent& ev) {
    ids.insert(ids.end(), ev.ids.begin(), ev.ids.end());
    text += ev.text;
    if (ev.finish != FinishReason::kNone) finish = ev.finish;
    if (o.json && o.stream && (!ev.ids.empty() || !ev.text.empty()))
      fmt::print("{}\n", dump({{"ids", ev.ids}, {"text", ev.text}}));
    else if (!o.json)
      fmt::print("{}", ev.text);
    std::fflush(stdout);
  });
  while (engine.step()) {
  }
  if (finish == FinishReason::kError) throw std::runtime_error("generation failed");
  if (o.json)
    fmt::print("{}\n",
               dump({{"ids", ids}, {"text", text}, {"finish_reason", finish_reason_name(finish)}}));
  else
    fmt::print("\n");
}

}  // namespace

void register_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd =
      app.add_subcommand("generate", "Generate text from a prompt (greedy unless --temperature)");
  cmd->add_option("--model", o->model,
                  "HF directory or .gguf file (default: the Gemma 3 270M GGUF)");
  cmd->add_option("--prompt-ids", o->prompt_ids, "Comma-separated token ids, e.g. 2,818,5279");
  cmd->add_option("--prompt", o->prompt, "Prompt text (tokenized with <bos>)");
  cmd->add_option("--max-tokens", o->max_tokens, "Most tokens to generate")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--kv-dtype", o->kv_dtype,
                  "KV cache element type: f16 (as llama.cpp), f32 (the exact reference) or bf16")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, R"(Print {"ids":[...],"text":"...","finish_reason":"..."})");
  cmd->add_flag("--stream", o->stream,
                "Print text as it is generated (the default for text output); with --json, one "
                R"({"ids":[..],"text":".."} line per token before the final object)");
  auto seed = std::make_shared<uint64_t>(0);
  add_sampling_flags(*cmd, o->sampling, seed);
  cmd->callback([o, cmd, seed] {
    finish_sampling_flags(*cmd, o->sampling, *seed);
    run(*o);
  });
}

}  // namespace gemmax::cli
