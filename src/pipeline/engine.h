// Engine: continuous batching over one Gemma3Model and one paged KV cache.
//
// Every step() the scheduler
//   1. takes in new requests and cancellations (submit()/cancel() may be called from any thread),
//   2. gives each running sequence its next decode token, preempting the newest sequences when KV
//      pages run out (their pages are released; they wait at the head of the queue and recompute
//      prompt + generated-so-far when resumed, so nothing is lost),
//   3. fills the rest of the token budget with prefill chunks: first of admitted sequences, then of
//      newly admitted ones (up to max_seqs),
//   4. runs all rows as ONE ragged Gemma3Inputs, samples where a row reached its end, and reports
//      each request's progress to its sink, retiring finished sequences.
// Only the thread calling step() touches the model and the cache.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "kv_cache/paged_kv_cache.h"
#include "model/gemma3_model.h"
#include "pipeline/sampler.h"
#include "pipeline/sampling_params.h"
#include "pipeline/stop_matcher.h"
#include "tokenizer/tokenizer.h"

namespace gemmax {

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
// "stop", "length", "cancelled", "error" (empty for kNone).
const char* finish_reason_name(FinishReason r);

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
  uint64_t seed_offset = 0;  // the choice index when one request asks for n > 1 choices
};

// What one step produced for one request. Every request gets exactly one event with a finish
// reason, and none after it.
struct GenerationEvent {
  uint64_t request_id = 0;
  std::vector<int32_t> ids;                   // generated ids (0 or 1 per event)
  std::string text;                           // new text, stop strings never included
  std::vector<TokenLogprob> logprobs;         // one per id when params.logprobs >= 0
  std::vector<TokenLogprob> prompt_logprobs;  // prompt tokens 1.. (token 0 has none), sent once
  FinishReason finish = FinishReason::kNone;
  std::string error;  // with kError
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;  // generated so far (stop ids not counted)
};
using EventSink = std::function<void(const GenerationEvent&)>;

struct EngineOptions {
  int max_seqs = 16;               // sequences holding KV pages at once
  int64_t max_batch_tokens = 256;  // tokens per step (decode rows + prefill chunks)
  int64_t kv_pages =
      0;  // pool size; 0: enough for max_seqs full-context sequences, capped at 256 MiB
  int max_waiting = 256;         // queued requests beyond this are refused (QueueFullError)
  int64_t echo_chunk = 32;       // prefill chunk for rows that need every prompt logit
  DType kv_dtype = DType::kF32;  // K/V element type (F16 halves the pool's bytes per token)
};

// submit() refused a request because the waiting queue is full.
class QueueFullError : public std::runtime_error {
  using runtime_error::runtime_error;
};

struct EngineStats {
  int64_t waiting = 0, running = 0;
  int64_t kv_pages_used = 0, kv_pages_total = 0;
  int64_t preemptions = 0, steps = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0;  // tokens run through prefill / sampled
};

class Engine {
 public:
  // `tokenizer` may be null: events then carry no text and stop strings are refused.
  Engine(Gemma3Model& model, const Tokenizer* tokenizer, EngineOptions options = {});
  ~Engine();

  // Any thread. Validates (std::invalid_argument naming the field: empty prompt, prompt at or
  // past the context, a prompt the KV pool can never hold, bad sampling values), else queues it.
  uint64_t submit(GenerationRequest request, EventSink sink);
  // Any thread. The request's sink gets a final kCancelled event at the next step unless it has
  // already finished; its KV pages are freed then.
  void cancel(uint64_t request_id);
  // Any thread: cancel everything queued or running (shutdown).
  void cancel_all();

  // Engine thread. Runs one scheduling step; false when there was nothing to do.
  bool step();
  // Engine thread. Blocks until work may be available (a submit, a cancel, notify()) or `timeout`.
  void wait_for_work(std::chrono::milliseconds timeout);
  void notify();
  bool idle() const;  // any thread: nothing waiting or running

  EngineStats stats() const;  // any thread
  const Gemma3Config& config() const { return model_.config(); }
  const PagedKVCache& cache() const { return cache_; }

 private:
  struct Sequence;
  struct Row {
    Sequence* seq;
    int64_t begin, end;  // token range of seq's tokens fed this step
  };
  struct Plan {
    std::vector<Row> rows, echo_rows;
    int64_t free_pages = 0, budget = 0;
    bool preempted = false;
  };

  void take_inbox();
  void preempt(Plan& plan, Sequence& s);
  bool place(Plan& plan, Sequence& s, int64_t max_tokens);
  void plan_decodes(Plan& plan);
  void plan_prefills(Plan& plan);
  void run(const std::vector<Row>& rows, ReturnLogits mode);
  void advance(Sequence& s, const float* logits, int64_t vocab, GenerationEvent& ev);
  void finish(Sequence& s, FinishReason reason, GenerationEvent& ev, std::string error = {});
  void retire_finished();
  int64_t pages_for_length(int64_t length) const;

  Gemma3Model& model_;
  const Tokenizer* tokenizer_;
  EngineOptions options_;
  PagedKVCache cache_;

  mutable std::mutex mu_;  // guards inbox_, cancels_, next_id_, stats_, wake_
  std::condition_variable cv_;
  bool wake_ = false;
  std::vector<std::unique_ptr<Sequence>> inbox_;
  std::unordered_set<uint64_t> cancels_;
  bool cancel_all_ = false;
  uint64_t next_id_ = 1;
  EngineStats stats_;

  // Engine thread only.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // admission order, oldest first
  // run()'s outputs, reused so that a decode step allocates and zeroes no logits (1 MiB per
  // sequence at Gemma 3's vocabulary); dropped when larger than kKeptLogitRows rows.
  static constexpr size_t kKeptLogitRows = 64;
  Gemma3Outputs outputs_;
};

}  // namespace gemmax
