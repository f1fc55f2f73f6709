#include "serve/server.h"

#include <fmt/core.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "serve/metrics.h"
#include "serve/openai_protocol.h"
#include "serve/peer_connection.h"
#include "tokenizer/chat_template.h"

namespace gemmax::serve {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One HTTP generation request: its n engine requests and the events they produced, in order.
struct Job {
  ParsedRequest req;
  std::string id;
  int64_t created = 0;
  Clock::time_point start;
  std::vector<uint64_t> engine_ids;
  std::vector<ChoiceResult> choices;
  std::vector<Clock::time_point> last_token;  // per choice, for inter-token latency
  int finished = 0;
  int64_t prompt_tokens = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<GenerationEvent, Clock::time_point>> events;

  void push(const GenerationEvent& ev) {  // engine thread
    {
      std::lock_guard lock(mu);
      events.emplace_back(ev, Clock::now());
    }
    cv.notify_one();
  }
  bool pop(GenerationEvent& ev, Clock::time_point& at) {  // handler thread; false on timeout
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return !events.empty(); }))
      return false;
    std::tie(ev, at) = std::move(events.front());
    events.pop_front();
    return true;
  }
  int choice_of(uint64_t engine_id) const {
    for (size_t i = 0; i < engine_ids.size(); ++i)
      if (engine_ids[i] == engine_id) return static_cast<int>(i);
    return -1;
  }
  bool done() const { return finished == static_cast<int>(choices.size()); }
};

}  // namespace

class Server::Impl {
 public:
  Impl(Gemma3Model& model, const Tokenizer& tokenizer, ServerOptions options)
      : tokenizer_(tokenizer),
        options_(std::move(options)),
        engine_(model, &tokenizer, options_.engine),
        info_{options_.model_name, &tokenizer, &model.config()} {
    routes();
  }

  void bind() {
    if (options_.port == 0) {
      port_ = http_.bind_to_any_port(options_.host);
      if (port_ < 0)
        throw std::runtime_error(fmt::format("cannot bind {}:<any port>", options_.host));
    } else {
      if (!http_.bind_to_port(options_.host, options_.port))
        throw std::runtime_error(fmt::format("cannot bind {}:{}", options_.host, options_.port));
      port_ = options_.port;
    }
  }
  int port() const { return port_; }

  void run() {
    std::thread engine_thread([this] { engine_loop(); });
    http_.listen_after_bind();
    engine_stop_ = true;
    engine_.cancel_all();
    engine_.notify();
    engine_thread.join();
  }

  void stop() {
    stopping_ = true;
    engine_.cancel_all();
    http_.stop();
  }

 private:
  void engine_loop() {
    while (!engine_stop_) {
      if (!engine_.step()) engine_.wait_for_work(std::chrono::milliseconds(100));
    }
    engine_.step();  // delivers the final cancellations
  }

  void routes();
  void handle_generate(Endpoint ep, const httplib::Request& req, httplib::Response& res);
  std::shared_ptr<Job> submit(ParsedRequest pr);
  void cancel(Job& job) {
    for (uint64_t id : job.engine_ids) engine_.cancel(id);
  }
  bool apply_next_event(Job& job, int& choice, GenerationEvent& ev);
  json response_json(const Job& job) const;
  std::string stream_chunk(const Job& job, int choice, const GenerationEvent& ev) const;
  bool stream(Job& job, httplib::DataSink& sink);
  bool wait_unless_client_gone(Job& job, const httplib::Request& req);
  void error(httplib::Response& res, const ApiError& e) {
    metrics_.request_failed(e.status);
    res.status = e.status;
    res.set_content(dump(e.body()), "application/json");
  }
  bool authorised(const httplib::Request& req) const {
    return options_.api_key.empty() ||
           req.get_header_value("Authorization") == "Bearer " + options_.api_key;
  }
  json models_json() const {
    return {{"object", "list"},
            {"data", json::array({{{"id", info_.name},
                                   {"object", "model"},
                                   {"created", created_},
                                   {"owned_by", "gemmax"},
                                   {"max_model_len", info_.config->max_position_embeddings}}})}};
  }
  void tokenize(const httplib::Request& req, httplib::Response& res);
  void detokenize(const httplib::Request& req, httplib::Response& res);

  const Tokenizer& tokenizer_;
  ServerOptions options_;
  Engine engine_;
  ModelInfo info_;
  Metrics metrics_;
  httplib::Server http_;
  int port_ = -1;
  int64_t created_ = unix_time();
  std::atomic<bool> stopping_{false}, engine_stop_{false};
  std::atomic<uint64_t> next_job_{1};
};

void Server::Impl::routes() {
  const int threads = options_.http_threads;
  http_.new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  http_.set_payload_max_length(options_.max_body_bytes);
  http_.set_keep_alive_timeout(1);  // idle keep-alive connections must not delay shutdown
  http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/health" || authorised(req))
      return httplib::Server::HandlerResponse::Unhandled;
    error(res, ApiError(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                        "invalid_request_error", "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  http_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // already an API error
    const std::string msg = res.status == 404
                                ? fmt::format("no route for {} {}", req.method, req.path)
                            : res.status == 413 ? std::string("the request body is too large")
                                                : fmt::format("HTTP {}", res.status);
    res.set_content(dump(ApiError(res.status, msg).body()), "application/json");
  });
  http_.set_exception_handler(
      [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string msg = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          msg = e.what();
        } catch (...) {
        }
        error(res, ApiError(500, msg, "server_error"));
      });
  http_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Endpoint::kChat, req, res);
  });
  http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Endpoint::kCompletion, req, res);
  });
  http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump(models_json()), "application/json");
  });
  http_.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] != info_.name)
      return error(res,
                   ApiError(404, fmt::format("the model '{}' does not exist", req.matches[1].str()),
                            "invalid_request_error", "model", "model_not_found"));
    res.set_content(dump(models_json()["data"][0]), "application/json");
  });
  http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = stopping_ ? 503 : 200;
    res.set_content(stopping_ ? R"({"status":"stopping"})" : R"({"status":"ok"})",
                    "application/json");
  });
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(engine_.stats()), "text/plain; version=0.0.4");
  });
  http_.Post("/tokenize",
             [this](const httplib::Request& req, httplib::Response& res) { tokenize(req, res); });
  http_.Post("/detokenize",
             [this](const httplib::Request& req, httplib::Response& res) { detokenize(req, res); });
}

std::shared_ptr<Job> Server::Impl::submit(ParsedRequest pr) {
  auto job = std::make_shared<Job>();
  job->req = std::move(pr);
  job->start = Clock::now();
  job->created = unix_time();
  job->id =
      fmt::format("{}-{}", job->req.endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl", next_job_++);
  job->choices.resize(static_cast<size_t>(job->req.n));
  job->last_token.resize(job->choices.size());
  job->prompt_tokens = static_cast<int64_t>(job->req.prompt.size());
  std::lock_guard lock(job->mu);  // events may arrive before every choice is submitted
  try {
    for (int i = 0; i < job->req.n; ++i)
      job->engine_ids.push_back(
          engine_.submit({job->req.prompt, job->req.params, static_cast<uint64_t>(i)},
                         [job](const GenerationEvent& ev) { job->push(ev); }));
  } catch (const QueueFullError& e) {
    cancel(*job);
    throw ApiError(429, e.what(), "rate_limit_error", "", "queue_full");
  } catch (const std::invalid_argument& e) {
    cancel(*job);
    throw api_error_from_engine(e);
  }
  return job;
}

// Waits for the job's next event and folds it into its choice. False on a timeout.
bool Server::Impl::apply_next_event(Job& job, int& choice, GenerationEvent& ev) {
  Clock::time_point at;
  if (!job.pop(ev, at)) return false;
  {
    std::lock_guard lock(job.mu);  // engine_ids is complete once submit() released the lock
    choice = job.choice_of(ev.request_id);
  }
  ChoiceResult& c = job.choices[static_cast<size_t>(choice)];
  if (!ev.ids.empty()) {
    const bool first = c.ids.empty();
    const double since = std::chrono::duration<double>(
                             at - (first ? job.start : job.last_token[static_cast<size_t>(choice)]))
                             .count();
    first ? metrics_.observe_ttft(since) : metrics_.observe_itl(since);
    job.last_token[static_cast<size_t>(choice)] = at;
  }
  c.text += ev.text;
  c.ids.insert(c.ids.end(), ev.ids.begin(), ev.ids.end());
  c.logprobs.insert(c.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
  c.prompt_logprobs.insert(c.prompt_logprobs.end(), ev.prompt_logprobs.begin(),
                           ev.prompt_logprobs.end());
  c.completion_tokens = ev.completion_tokens;
  if (ev.finish != FinishReason::kNone) {
    c.finish = ev.finish;
    c.error = ev.error;
    ++job.finished;
    if (job.done()) metrics_.observe_e2e(std::chrono::duration<double>(at - job.start).count());
  }
  return true;
}

json Server::Impl::response_json(const Job& job) const {
  const bool chat = job.req.endpoint == Endpoint::kChat;
  json choices = json::array();
  int64_t completion = 0;
  for (size_t i = 0; i < job.choices.size(); ++i) {
    const ChoiceResult& c = job.choices[i];
    completion += c.completion_tokens;
    json choice = {
        {"index", i}, {"finish_reason", openai_finish_reason(c.finish)}, {"logprobs", nullptr}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      if (job.req.params.logprobs >= 0) choice["logprobs"] = chat_logprobs(tokenizer_, c.logprobs);
    } else {
      const std::string prefix = job.req.echo ? job.req.prompt_text : "";
      choice["text"] = prefix + c.text;
      if (job.req.params.logprobs >= 0)
        choice["logprobs"] = completion_logprobs(tokenizer_, c.logprobs, c.prompt_logprobs,
                                                 job.req.echo ? job.req.prompt[0] : -1, 0);
    }
    choices.push_back(std::move(choice));
  }
  return {{"id", job.id},           {"object", chat ? "chat.completion" : "text_completion"},
          {"created", job.created}, {"model", info_.name},
          {"choices", choices},     {"usage", usage_json(job.prompt_tokens, completion)}};
}

std::string Server::Impl::stream_chunk(const Job& job, int choice,
                                       const GenerationEvent& ev) const {
  const bool chat = job.req.endpoint == Endpoint::kChat;
  const ChoiceResult& c = job.choices[static_cast<size_t>(choice)];
  json ch = {
      {"index", choice},
      {"finish_reason",
       ev.finish == FinishReason::kNone ? json(nullptr) : json(openai_finish_reason(ev.finish))},
      {"logprobs", nullptr}};
  if (chat) {
    ch["delta"] = {{"content", ev.text}};
    if (c.ids.size() == ev.ids.size())
      ch["delta"]["role"] = "assistant";  // the choice's first chunk
    if (job.req.params.logprobs >= 0) ch["logprobs"] = chat_logprobs(tokenizer_, ev.logprobs);
  } else {
    const bool first = c.ids.size() == ev.ids.size();
    ch["text"] = (first && job.req.echo ? job.req.prompt_text : "") + ev.text;
    if (job.req.params.logprobs >= 0)
      ch["logprobs"] = completion_logprobs(tokenizer_, ev.logprobs, ev.prompt_logprobs,
                                           first && job.req.echo ? job.req.prompt[0] : -1, 0);
  }
  const json chunk = {{"id", job.id},
                      {"object", chat ? "chat.completion.chunk" : "text_completion"},
                      {"created", job.created},
                      {"model", info_.name},
                      {"choices", json::array({ch})}};
  return "data: " + dump(chunk) + "\n\n";
}

// Waits until every choice finished; false (after cancelling) when the client closed or reset the
// connection first. httplib only tells a handler about a dead client when it writes, so the
// connection is looked up in the kernel's socket table every 300 ms.
bool Server::Impl::wait_unless_client_gone(Job& job, const httplib::Request& req) {
  PeerWatch watch({req.local_addr, req.local_port}, {req.remote_addr, req.remote_port});
  int choice = -1;
  GenerationEvent ev;
  while (!job.done()) {
    apply_next_event(job, choice, ev);
    if (!job.done() && watch.disconnected()) return cancel(job), false;
  }
  return true;
}

// Writes the whole SSE stream; false (after cancelling) when the client went away.
bool Server::Impl::stream(Job& job, httplib::DataSink& sink) {
  auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
  while (!job.done()) {
    int choice = -1;
    GenerationEvent ev;
    if (!apply_next_event(job, choice, ev)) {
      if (!sink.is_writable()) return cancel(job), false;
      continue;
    }
    if (ev.finish == FinishReason::kError) {
      write("data: " + dump(ApiError(500, ev.error, "server_error").body()) + "\n\n");
      continue;
    }
    if (ev.ids.empty() && ev.text.empty() && ev.finish == FinishReason::kNone &&
        ev.prompt_logprobs.empty())
      continue;
    if (!write(stream_chunk(job, choice, ev))) return cancel(job), false;
  }
  if (job.req.include_usage) {
    int64_t completion = 0;
    for (const ChoiceResult& c : job.choices) completion += c.completion_tokens;
    const json usage = {{"id", job.id},
                        {"object", job.req.endpoint == Endpoint::kChat ? "chat.completion.chunk"
                                                                       : "text_completion"},
                        {"created", job.created},
                        {"model", info_.name},
                        {"choices", json::array()},
                        {"usage", usage_json(job.prompt_tokens, completion)}};
    write("data: " + dump(usage) + "\n\n");
  }
  write("data: [DONE]\n\n");
  sink.done();
  return true;
}

void Server::Impl::handle_generate(Endpoint ep, const httplib::Request& req,
                                   httplib::Response& res) {
  metrics_.request_started(ep == Endpoint::kChat ? "chat_completions" : "completions");
  try {
    if (stopping_) throw ApiError(503, "the server is shutting down", "server_error");
    std::shared_ptr<Job> job = submit(parse_generation_request(ep, req.body, info_));
    if (job->req.stream) {
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, job](size_t, httplib::DataSink& sink) { return stream(*job, sink); },
          [this, job](bool ok) {
            if (!ok) cancel(*job);  // the client went away before the stream ended
          });
      return;
    }
    if (!wait_unless_client_gone(*job, req)) {
      // Only a client that half-closed its side could still read this. Like a stream whose client
      // went away, it is not counted as an error.
      res.status = 499;  // nginx's "client closed request"
      res.set_content(
          dump(ApiError(499, "the client closed the connection; request cancelled").body()),
          "application/json");
      return;
    }
    for (const ChoiceResult& c : job->choices) {
      if (c.finish == FinishReason::kError) throw ApiError(500, c.error, "server_error");
      if (c.finish == FinishReason::kCancelled)
        throw ApiError(503, "the request was cancelled (shutdown)", "server_error");
    }
    res.set_content(dump(response_json(*job)), "application/json");
  } catch (const ApiError& e) {
    error(res, e);
  }
}

void Server::Impl::tokenize(const httplib::Request& req, httplib::Response& res) {
  metrics_.request_started("tokenize");
  try {
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw ApiError(400, "the request body must be a JSON object");
    std::vector<int32_t> ids;
    if (j.contains("messages")) {
      ParsedRequest r = parse_generation_request(
          Endpoint::kChat,
          dump({{"model", info_.name}, {"messages", j["messages"]}, {"max_tokens", 0}}), info_);
      ids = r.prompt;
    } else {
      if (!j.contains("prompt") || !j["prompt"].is_string())
        throw ApiError(400, "'prompt' must be a string (or give 'messages')",
                       "invalid_request_error", "prompt");
      bool special = true;
      if (j.contains("add_special_tokens") && j["add_special_tokens"].is_boolean())
        special = j["add_special_tokens"];
      ids = tokenizer_.encode(j["prompt"].get<std::string>(), EncodeOptions{.add_bos = special});
    }
    res.set_content(dump({{"tokens", ids},
                          {"count", ids.size()},
                          {"max_model_len", info_.config->max_position_embeddings}}),
                    "application/json");
  } catch (const ApiError& e) {
    error(res, e);
  }
}

void Server::Impl::detokenize(const httplib::Request& req, httplib::Response& res) {
  metrics_.request_started("detokenize");
  try {
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("tokens") || !j["tokens"].is_array())
      throw ApiError(400, "'tokens' must be an array of token ids", "invalid_request_error",
                     "tokens");
    std::vector<int32_t> ids;
    for (const json& id : j["tokens"]) {
      const bool ok = id.is_number_integer() && id.get<int64_t>() >= 0 &&
                      id.get<int64_t>() <= INT32_MAX &&
                      tokenizer_.valid_id(static_cast<int32_t>(id.get<int64_t>()));
      if (!ok)
        throw ApiError(400, "'tokens' must be token ids within the vocabulary",
                       "invalid_request_error", "tokens");
      ids.push_back(id.get<int32_t>());
    }
    res.set_content(dump({{"prompt", tokenizer_.decode(ids)}}), "application/json");
  } catch (const ApiError& e) {
    error(res, e);
  }
}

Server::Server(Gemma3Model& model, const Tokenizer& tokenizer, ServerOptions options)
    : impl_(std::make_unique<Impl>(model, tokenizer, std::move(options))) {}
Server::~Server() = default;
void Server::bind() { impl_->bind(); }
int Server::port() const { return impl_->port(); }
void Server::run() { impl_->run(); }
void Server::stop() { impl_->stop(); }

}  // namespace gemmax::serve
