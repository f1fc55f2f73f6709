#include "pipeline/engine.h"

#include <fmt/core.h>

#include <algorithm>
#include <utility>

namespace gemmax {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
    case FinishReason::kNone:
      break;
  }
  return "";
}

struct Engine::Sequence {
  Sequence(uint64_t id_, GenerationRequest r, EventSink s, const Tokenizer* tok)
      : id(id_),
        params(r.params),
        sink(std::move(s)),
        sampler(r.params, r.prompt, r.seed_offset),
        stop(r.params.stop),
        tokens(std::move(r.prompt)),
        prompt_len(static_cast<int64_t>(tokens.size())),
        echo_pending(r.params.prompt_logprobs >= 0) {
    if (tok) detok.emplace(*tok);
  }
  uint64_t id;
  SamplingParams params;
  EventSink sink;
  Sampler sampler;
  std::optional<StreamingDetokenizer> detok;
  StopMatcher stop;
  std::vector<int32_t> tokens;  // prompt + generated: what the KV sequence must hold
  int64_t prompt_len;
  int64_t generated = 0;
  std::optional<SeqId> kv;  // set while admitted
  int64_t computed = 0;     // tokens already in the KV sequence
  bool echo_pending;        // prompt logprobs asked for and not sent yet
  std::vector<TokenLogprob> prompt_lp;
  int64_t planned_step = -1;  // the step that placed a row of this sequence
  FinishReason finished = FinishReason::kNone;
  int64_t remaining() const { return static_cast<int64_t>(tokens.size()) - computed; }
};

namespace {

int64_t default_pages(const KVCacheParams& p, int64_t pages) {
  constexpr int64_t kDefaultBytes = int64_t{256} << 20;
  return pages > 0 ? pages : PagedKVCache::pages_for_bytes(p, kDefaultBytes);
}

}  // namespace

Engine::Engine(Gemma3Model& model, const Tokenizer* tokenizer, EngineOptions options)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      cache_(model.kv_params(options.kv_dtype),
             default_pages(model.kv_params(options.kv_dtype), options.kv_pages)) {
  if (options_.max_seqs < 1) throw std::invalid_argument("max_seqs: must be at least 1");
  if (options_.max_batch_tokens < 1)
    throw std::invalid_argument("max_batch_tokens: must be at least 1");
  if (options_.echo_chunk < 1) throw std::invalid_argument("echo_chunk: must be at least 1");
  stats_.kv_pages_total = cache_.total_pages();
}

Engine::~Engine() = default;

int64_t Engine::pages_for_length(int64_t length) const {
  return PagedKVCache::pages_for_length(cache_.params(), length);
}

uint64_t Engine::submit(GenerationRequest request, EventSink sink) {
  const Gemma3Config& cfg = model_.config();
  const auto n = static_cast<int64_t>(request.prompt.size());
  if (n == 0) throw std::invalid_argument("prompt: must not be empty");
  for (int32_t id : request.prompt)
    if (id < 0 || id >= cfg.vocab_size)
      throw std::invalid_argument(
          fmt::format("prompt: token id {} is outside the vocabulary of {}", id, cfg.vocab_size));
  if (n >= cfg.max_position_embeddings)
    throw std::invalid_argument(fmt::format("prompt: {} tokens leave no room in the context of {}",
                                            n, cfg.max_position_embeddings));
  // One page per layer of slack for the chunk in flight.
  if (pages_for_length(n + 1) + cache_.params().num_layers > cache_.total_pages())
    throw std::invalid_argument(
        fmt::format("prompt: {} tokens need more KV cache than the pool of {} pages holds", n,
                    cache_.total_pages()));
  request.params.validate(cfg.vocab_size);
  if (!tokenizer_ && !request.params.stop.empty())
    throw std::invalid_argument("stop: stop strings need a tokenizer");
  std::lock_guard lock(mu_);
  if (stats_.waiting >= options_.max_waiting)
    throw QueueFullError(
        fmt::format("the queue is full ({} requests waiting)", options_.max_waiting));
  const uint64_t id = next_id_++;
  inbox_.push_back(std::make_unique<Sequence>(id, std::move(request), std::move(sink), tokenizer_));
  ++stats_.waiting;  // counted from submission so queue limits see it at once
  wake_ = true;
  cv_.notify_all();
  return id;
}

void Engine::cancel(uint64_t request_id) {
  std::lock_guard lock(mu_);
  cancels_.insert(request_id);
  wake_ = true;
  cv_.notify_all();
}

void Engine::cancel_all() {
  std::lock_guard lock(mu_);
  cancel_all_ = true;
  wake_ = true;
  cv_.notify_all();
}

void Engine::notify() {
  std::lock_guard lock(mu_);
  wake_ = true;
  cv_.notify_all();
}

void Engine::wait_for_work(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return wake_; });
  wake_ = false;
}

bool Engine::idle() const {
  std::lock_guard lock(mu_);
  return stats_.waiting == 0 && stats_.running == 0;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

// Moves submissions into the waiting queue and applies cancellations.
void Engine::take_inbox() {
  std::vector<std::unique_ptr<Sequence>> fresh;
  std::unordered_set<uint64_t> cancels;
  bool all = false;
  {
    std::lock_guard lock(mu_);
    fresh.swap(inbox_);
    cancels.swap(cancels_);
    all = std::exchange(cancel_all_, false);
  }
  for (auto& s : fresh) waiting_.push_back(std::move(s));
  if (cancels.empty() && !all) return;
  auto apply = [&](Sequence& s) {
    if (all || cancels.count(s.id)) {
      GenerationEvent ev;
      finish(s, FinishReason::kCancelled, ev);
      s.sink(ev);
    }
  };
  for (auto& s : running_) apply(*s);
  for (auto& s : waiting_) apply(*s);
  retire_finished();
}

void Engine::preempt(Plan& plan, Sequence& s) {
  const int64_t before = cache_.free_pages();
  cache_.release(*s.kv);
  plan.free_pages += cache_.free_pages() - before;  // the pages are this step's to hand out again
  plan.preempted = true;
  s.kv.reset();
  s.computed = 0;
  s.prompt_lp.clear();
  auto it =
      std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &s; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
  std::lock_guard lock(mu_);
  ++stats_.preemptions;
}

// Adds a row of up to `max_tokens` of s's pending tokens that fits the free pages (the largest
// that does); false when not even one token fits.
bool Engine::place(Plan& plan, Sequence& s, int64_t max_tokens) {
  int64_t n = std::min(max_tokens, s.remaining());
  if (n < 1) return false;
  if (cache_.pages_needed(*s.kv, n) > plan.free_pages) {
    int64_t lo = 0, hi = n;  // lo fits, hi does not
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) / 2;
      (cache_.pages_needed(*s.kv, mid) <= plan.free_pages ? lo : hi) = mid;
    }
    n = lo;
    if (n == 0) return false;
  }
  plan.free_pages -= cache_.pages_needed(*s.kv, n);
  plan.budget -= n;
  s.planned_step = stats_.steps;
  const bool echo = s.echo_pending && s.computed < s.prompt_len;
  (echo ? plan.echo_rows : plan.rows).push_back(Row{&s, s.computed, s.computed + n});
  return true;
}

// Decode rows first, oldest first; a row that finds no page preempts the newest sequence not yet
// in this step. A sequence that cannot grow even alone ends with "length".
void Engine::plan_decodes(Plan& plan) {
  for (size_t i = 0; i < running_.size() && plan.budget > 0; ++i) {
    Sequence& s = *running_[i];
    if (s.remaining() != 1) continue;
    while (!place(plan, s, 1)) {
      if (running_.size() > i + 1 && running_.back()->planned_step != stats_.steps) {
        preempt(plan, *running_.back());
        continue;
      }
      if (plan.rows.empty() && plan.echo_rows.empty() && running_.size() == 1) {
        GenerationEvent ev;
        ev.text = s.detok ? s.stop.push(s.detok->finish()) + s.stop.flush() : "";
        finish(s, FinishReason::kLength, ev);
        ev.prompt_tokens = s.prompt_len;
        ev.completion_tokens = s.generated;
        s.sink(ev);
      }
      break;
    }
  }
}

// Prefill chunks: admitted sequences first, then new admissions while there is room.
void Engine::plan_prefills(Plan& plan) {
  for (size_t i = 0; i < running_.size() && plan.budget > 0; ++i) {
    Sequence& s = *running_[i];
    if (s.remaining() <= 1 || s.finished != FinishReason::kNone) continue;
    const int64_t chunk = s.echo_pending ? std::min(plan.budget, options_.echo_chunk) : plan.budget;
    while (!place(plan, s, chunk)) {
      // Nothing else can make progress: free room from newer sequences (avoids a deadlock of
      // half-prefilled sequences).
      if (!plan.rows.empty() || !plan.echo_rows.empty() || running_.size() <= i + 1) break;
      preempt(plan, *running_.back());
    }
  }
  // After a preemption the pool is short: admitting now would only preempt again (thrash).
  while (!plan.preempted && !waiting_.empty() && plan.budget > 0 &&
         static_cast<int>(running_.size()) < options_.max_seqs) {
    Sequence& s = *waiting_.front();
    s.kv = cache_.add_sequence();
    const int64_t chunk = s.echo_pending ? std::min(plan.budget, options_.echo_chunk) : plan.budget;
    if (!place(plan, s, chunk)) {
      cache_.release(*s.kv);
      s.kv.reset();
      if (running_.empty() && plan.rows.empty() && plan.echo_rows.empty()) {
        GenerationEvent ev;  // can never fit (submit() checks this, so only a tiny pool gets here)
        finish(s, FinishReason::kError, ev, "the KV cache pool is too small for this prompt");
        s.sink(ev);
        waiting_.pop_front();
        continue;
      }
      break;
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

bool Engine::step() {
  take_inbox();
  const bool work = !waiting_.empty() || !running_.empty();
  if (work) {
    Plan plan;
    plan.free_pages = cache_.free_pages();
    plan.budget = options_.max_batch_tokens;
    plan_decodes(plan);
    retire_finished();
    plan_prefills(plan);
    if (plan.rows.empty() && plan.echo_rows.empty() && !running_.empty()) {
      // Nothing fits even after preemption (a pool too small for what is left): end the oldest
      // sequence instead of spinning.
      Sequence& s = *running_.front();
      GenerationEvent ev;
      finish(s, FinishReason::kLength, ev);
      s.sink(ev);
    }
    retire_finished();
    run(plan.rows, ReturnLogits::kLastToken);
    run(plan.echo_rows, ReturnLogits::kAll);
    retire_finished();
  }
  // Also after an idle step: cancellations may just have freed pages.
  std::lock_guard lock(mu_);
  stats_.steps += work ? 1 : 0;
  stats_.waiting = static_cast<int64_t>(waiting_.size() + inbox_.size());
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.kv_pages_used = cache_.used_pages();
  return work;
}

void Engine::run(const std::vector<Row>& rows, ReturnLogits mode) {
  if (rows.empty()) return;
  Gemma3Inputs in;
  in.return_logits = mode;
  int64_t prompt_tokens = 0;
  for (const Row& r : rows) {
    in.add_row(*r.seq->kv, std::vector<int32_t>(r.seq->tokens.begin() + r.begin,
                                                r.seq->tokens.begin() + r.end));
    prompt_tokens += std::max<int64_t>(0, std::min(r.end, r.seq->prompt_len) - r.begin);
  }
  Gemma3Outputs& out = outputs_;
  try {
    model_.execute(in, cache_, out);
  } catch (const std::exception& e) {
    out = {};  // unspecified after a failed step, and possibly grown by an echo
    // A failed step leaves these sequences in an unknown state: end them rather than corrupt
    // output.
    for (const Row& r : rows) {
      GenerationEvent ev;
      finish(*r.seq, FinishReason::kError, ev, e.what());
      r.seq->sink(ev);
    }
    return;
  }
  int64_t sampled = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    Sequence& s = *rows[i].seq;
    s.computed = rows[i].end;
    const int64_t first = out.logit_row_offsets[i], last = out.logit_row_offsets[i + 1] - 1;
    if (mode == ReturnLogits::kAll) {
      for (int64_t k = first; k <= last; ++k) {
        const int64_t next =
            out.positions[static_cast<size_t>(k)] + 1;  // the token this row predicts
        if (next < s.prompt_len)
          s.prompt_lp.push_back(token_logprob({out.row(k), static_cast<size_t>(out.vocab_size)},
                                              s.tokens[static_cast<size_t>(next)],
                                              s.params.prompt_logprobs));
      }
    }
    if (s.remaining() > 0) continue;  // mid-prefill
    GenerationEvent ev;
    ev.request_id = s.id;
    if (s.echo_pending) {
      ev.prompt_logprobs = std::move(s.prompt_lp);
      s.echo_pending = false;
    }
    advance(s, out.row(last), out.vocab_size, ev);
    sampled += static_cast<int64_t>(ev.ids.size());
    ev.prompt_tokens = s.prompt_len;
    ev.completion_tokens = s.generated;
    s.sink(ev);
  }
  // Keep the logits buffer for the next step unless an echo's all-token logits grew it large.
  if (out.logits.capacity() > kKeptLogitRows * static_cast<size_t>(out.vocab_size)) out = {};
  std::lock_guard lock(mu_);
  stats_.prompt_tokens += prompt_tokens;
  stats_.generated_tokens += sampled;
}

// Samples the next token of a sequence whose KV is complete, and decides whether it is done.
void Engine::advance(Sequence& s, const float* logits, int64_t vocab, GenerationEvent& ev) {
  auto drain = [&] {  // releases held-back text; true if it completed a stop string
    if (!s.detok) return false;
    ev.text += s.stop.push(s.detok->finish());
    ev.text += s.stop.flush();
    return s.stop.stopped();
  };
  if (s.generated >= s.params.max_tokens) return finish(s, FinishReason::kLength, ev);
  const std::span<const float> row(logits, static_cast<size_t>(vocab));
  const int32_t id = s.sampler.sample(row);
  const auto& eos = model_.config().eos_token_ids;
  const bool stop_id =
      std::find(eos.begin(), eos.end(), id) != eos.end() || (tokenizer_ && tokenizer_->is_stop(id));
  if (stop_id && !s.params.ignore_eos) {
    drain();
    return finish(s, FinishReason::kStop, ev);
  }
  s.sampler.accept(id);
  s.tokens.push_back(id);
  ++s.generated;
  ev.ids.push_back(id);
  if (s.params.logprobs >= 0) ev.logprobs.push_back(token_logprob(row, id, s.params.logprobs));
  if (s.detok) {
    ev.text += s.stop.push(s.detok->push(id));
    if (s.stop.stopped()) return finish(s, FinishReason::kStop, ev);
  }
  if (s.generated >= s.params.max_tokens ||
      static_cast<int64_t>(s.tokens.size()) >= model_.config().max_position_embeddings)
    finish(s, drain() ? FinishReason::kStop : FinishReason::kLength, ev);
}

void Engine::finish(Sequence& s, FinishReason reason, GenerationEvent& ev, std::string error) {
  ev.request_id = s.id;
  ev.finish = reason;
  ev.error = std::move(error);
  ev.prompt_tokens = s.prompt_len;
  ev.completion_tokens = s.generated;
  s.finished = reason;
  if (s.kv) cache_.release(*s.kv);
  s.kv.reset();
}

void Engine::retire_finished() {
  auto done = [](const std::unique_ptr<Sequence>& s) { return s->finished != FinishReason::kNone; };
  std::erase_if(running_, done);
  std::erase_if(waiting_, done);
}

}  // namespace gemmax
