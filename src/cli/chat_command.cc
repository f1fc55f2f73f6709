// gemmax chat: an interactive chat in the terminal. Each stdin line is a user turn; the whole
// history goes through the model's chat template every turn and the reply streams to stdout.
// Works with a pipe too (one reply per line, ending at EOF). "/reset" clears the history.
#include <fmt/core.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/loaded_model.h"
#include "cli/sampling_flags.h"
#include "pipeline/engine.h"
#include "tokenizer/chat_template.h"

namespace gemmax::cli {
namespace {

struct ChatOptions {
  std::string model, system, kv_dtype = "f16";
  int max_tokens = 512;
  int threads = 0;
  int64_t kv_cache_mb = 256;
  SamplingParams sampling;
  uint64_t seed = 0;
};

// Generates one reply to `prompt`, printing it as it comes; returns its text.
std::string reply(Engine& engine, const std::vector<int32_t>& prompt, const SamplingParams& p) {
  std::string text;
  FinishReason finish = FinishReason::kNone;
  std::string error;
  engine.submit({prompt, p, 0}, [&](const GenerationEvent& ev) {
    text += ev.text;
    fmt::print("{}", ev.text);
    std::fflush(stdout);
    if (ev.finish != FinishReason::kNone) finish = ev.finish;
    error = ev.error;
  });
  while (engine.step()) {
  }
  fmt::print("\n");
  if (finish == FinishReason::kError) throw std::runtime_error("generation failed: " + error);
  return text;
}

void run(const ChatOptions& o) {
  LoadedModel m = load_model(o.model, o.threads, true);
  const ChatTemplate tmpl = ChatTemplate::for_tokenizer(*m.tokenizer);
  EngineOptions eo;
  eo.max_seqs = 1;
  eo.max_batch_tokens = 512;
  eo.kv_dtype = parse_kv_dtype(o.kv_dtype);
  eo.kv_pages = PagedKVCache::pages_for_bytes(m.model->kv_params(eo.kv_dtype), o.kv_cache_mb << 20);
  Engine engine(*m.model, m.tokenizer.get(), eo);
  const bool interactive = isatty(STDIN_FILENO) != 0;
  std::vector<ChatMessage> history;
  if (!o.system.empty()) history.push_back({"system", o.system});
  const size_t base = history.size();
  for (std::string line;;) {
    if (interactive) fmt::print(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/reset") {
      history.resize(base);
      continue;
    }
    history.push_back({"user", line});
    const std::string rendered = tmpl.render(history, true);
    const std::vector<int32_t> prompt =
        m.tokenizer->encode(rendered, EncodeOptions{.add_bos = false});
    const int64_t ctx = m.model->config().max_position_embeddings;
    if (static_cast<int64_t>(prompt.size()) >= ctx) {
      fmt::print(
          stderr,
          "gemmax chat: the conversation no longer fits the context; /reset to start over\n");
      history.pop_back();
      continue;
    }
    SamplingParams p = o.sampling;
    p.max_tokens = static_cast<int>(
        std::min<int64_t>(o.max_tokens, ctx - static_cast<int64_t>(prompt.size())));
    history.push_back({"assistant", reply(engine, prompt, p)});
  }
}

}  // namespace

void register_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* cmd = app.add_subcommand("chat", "Interactive chat (stdin lines are user turns)");
  cmd->add_option("--model", o->model,
                  "HF directory or .gguf file (default: the Gemma 3 270M GGUF)");
  cmd->add_option("--system", o->system, "System prompt");
  cmd->add_option("--max-tokens", o->max_tokens, "Most tokens per reply")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--kv-dtype", o->kv_dtype,
                  "KV cache element type: f16 (as llama.cpp), f32 (the exact reference) or bf16")
      ->capture_default_str();
  cmd->add_option("--kv-cache-mb", o->kv_cache_mb, "KV cache pool size in MiB")
      ->capture_default_str();
  auto seed = std::make_shared<uint64_t>(0);
  add_sampling_flags(*cmd, o->sampling, seed);
  cmd->callback([o, cmd, seed] {
    finish_sampling_flags(*cmd, o->sampling, *seed);
    run(*o);
  });
}

}  // namespace gemmax::cli
