// The OpenAI-compatible HTTP server: cpp-httplib handler threads parse requests, submit them to
// the Engine and wait on a per-request event queue; one engine thread runs the scheduler loop.
#pragma once

#include <memory>
#include <string>

#include "model/gemma3_model.h"
#include "pipeline/engine.h"
#include "tokenizer/tokenizer.h"

namespace gemmax::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (see Server::port())
  std::string model_name;  // the id clients must send as "model"
  std::string api_key;     // empty: no authentication
  EngineOptions engine;
  // Connections served at once; keep it above max_seqs + max_waiting so the engine's queue limit
  // (429) is reached before connections queue inside httplib.
  int http_threads = 128;
  size_t max_body_bytes = 8 << 20;  // larger bodies get 413
};

class Server {
 public:
  Server(Gemma3Model& model, const Tokenizer& tokenizer, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket (throws std::runtime_error naming host:port on failure).
  void bind();
  int port() const;
  // Serves until stop(); starts and joins the engine thread. Requests in flight when stop() is
  // called are cancelled (streams end with finish_reason "abort").
  void run();
  // Any thread (not a signal handler): stop accepting, cancel in-flight requests, make run()
  // return.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gemmax::serve
