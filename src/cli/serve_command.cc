// gemmax serve: the OpenAI-compatible HTTP server. SIGINT/SIGTERM are blocked in every thread and
// taken by a sigwait thread, which asks the server to stop (no work in a signal handler).
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/loaded_model.h"
#include "model/default_model.h"
#include "serve/server.h"

namespace gemmax::cli {
namespace {

struct ServeOptions {
  std::string model, host = "127.0.0.1", api_key, model_name, kv_dtype = "f16";
  int port = 8080, threads = 0, max_seqs = 16, max_queue = 64, http_threads = 128;
  int64_t max_batch_tokens = 256, kv_cache_mb = 256;
};

// Waits for SIGINT/SIGTERM (blocked by the caller before any thread started) until `done`.
void wait_for_signals(const sigset_t& set, serve::Server& server, const std::atomic<bool>& done) {
  const timespec tick{0, 200'000'000};
  while (!done) {
    const int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      fmt::print(stderr, "gemmax serve: signal {}, stopping\n", sig);
      server.stop();
      return;
    }
  }
}

void run(const ServeOptions& o) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // inherited by every thread started below

  LoadedModel m = load_model(o.model, o.threads, true);
  serve::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.api_key = o.api_key;
  so.model_name = o.model_name.empty()
                      ? std::filesystem::path(resolve_model_path(o.model)).stem().string()
                      : o.model_name;
  so.http_threads = o.http_threads;
  so.engine.max_seqs = o.max_seqs;
  so.engine.max_batch_tokens = o.max_batch_tokens;
  so.engine.max_waiting = o.max_queue;
  so.engine.kv_dtype = parse_kv_dtype(o.kv_dtype);
  so.engine.kv_pages =
      PagedKVCache::pages_for_bytes(m.model->kv_params(so.engine.kv_dtype), o.kv_cache_mb << 20);
  serve::Server server(*m.model, *m.tokenizer, so);
  server.bind();
  // The port line is what scripts wait for (with --port 0 it is the only way to learn the port).
  fmt::print("gemmax serve: model '{}' on http://{}:{} ({} KV pages)\n", so.model_name, o.host,
             server.port(), so.engine.kv_pages);
  std::fflush(stdout);
  std::atomic<bool> done{false};
  std::thread signals([&] { wait_for_signals(set, server, done); });
  server.run();
  done = true;
  signals.join();
  fmt::print(stderr, "gemmax serve: stopped\n");
}

}  // namespace

void register_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd =
      app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  cmd->add_option("--model", o->model,
                  "HF directory or .gguf file (default: the Gemma 3 270M GGUF)");
  cmd->add_option("--model-name", o->model_name,
                  "Model id clients send (default: the file name's stem)");
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port (0 = any free port, printed at start)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--max-seqs", o->max_seqs, "Sequences decoded together")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "Tokens per engine step")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--kv-dtype", o->kv_dtype,
                  "KV cache element type: f16 (as llama.cpp), f32 (the exact reference) or bf16")
      ->capture_default_str();
  cmd->add_option("--kv-cache-mb", o->kv_cache_mb, "KV cache pool size in MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-queue", o->max_queue, "Waiting requests before 429")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--http-threads", o->http_threads, "Connections served at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY'");
  cmd->add_option("--threads", o->threads, "Compute threads (0 = all cores)")
      ->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace gemmax::cli
