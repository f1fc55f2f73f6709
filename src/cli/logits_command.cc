// gemmax logits: the top-k logits at the last (or every) position of a prompt, for checking
// numerics against other engines from scripts.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>

#include "cli/commands.h"
#include "cli/loaded_model.h"

namespace gemmax::cli {
namespace {

struct LogitsOptions {
  std::string model, prompt_ids, prompt;
  int top = 10;
  int threads = 0;
  bool all_positions = false;
  bool json = false;
};

nlohmann::json top_k(const float* row, int64_t vocab, int k) {
  std::vector<int32_t> idx(vocab);
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t kk = std::min<int64_t>(k, vocab);
  std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  nlohmann::json top = nlohmann::json::array();
  for (int64_t i = 0; i < kk; ++i) top.push_back({idx[i], row[idx[i]]});
  return top;
}

void run(const LogitsOptions& o) {
  if (o.top < 1) throw std::invalid_argument("--top must be at least 1");
  LoadedModel m = load_model(o.model, o.threads, !o.prompt.empty());
  const std::vector<int32_t> tokens = prompt_tokens(m, o.prompt_ids, o.prompt);
  PagedKVCache cache = single_sequence_cache(*m.model, static_cast<int64_t>(tokens.size()));
  Gemma3Inputs in;
  in.add_row(cache.add_sequence(), tokens);
  in.return_logits = o.all_positions ? ReturnLogits::kAll : ReturnLogits::kLastToken;
  const Gemma3Outputs out = m.model->execute(in, cache);
  nlohmann::json positions = nlohmann::json::array();
  for (int64_t i = 0; i < out.num_logit_rows(); ++i)
    positions.push_back(
        {{"pos", out.positions[i]}, {"top", top_k(out.row(i), out.vocab_size, o.top)}});
  if (o.json) {
    fmt::print("{}\n", nlohmann::json{{"positions", positions}}.dump());
    return;
  }
  for (const auto& p : positions) {
    fmt::print("pos {:5}:", p["pos"].get<int64_t>());
    for (const auto& t : p["top"]) fmt::print("  {}={:.4f}", t[0].get<int>(), t[1].get<double>());
    fmt::print("\n");
  }
}

}  // namespace

void register_logits_command(CLI::App& app) {
  auto o = std::make_shared<LogitsOptions>();
  CLI::App* cmd = app.add_subcommand("logits", "Print the top-k logits of a prompt");
  cmd->add_option("--model", o->model,
                  "HF directory or .gguf file (default: the Gemma 3 270M GGUF)");
  cmd->add_option("--prompt-ids", o->prompt_ids, "Comma-separated token ids, e.g. 2,818,5279");
  cmd->add_option("--prompt", o->prompt, "Prompt text (tokenized with <bos>)");
  cmd->add_option("--top", o->top, "How many logits per position")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  cmd->add_flag("--all-positions", o->all_positions, "Every position, not only the last");
  cmd->add_flag("--json", o->json, R"(Print {"positions":[{"pos":i,"top":[[id,logit],...]}]})");
  cmd->callback([o] { run(*o); });
}

}  // namespace gemmax::cli
