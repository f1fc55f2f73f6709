#include "serve/metrics.h"

#include <fmt/core.h>

#include <algorithm>

namespace gemmax::serve {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  std::lock_guard lock(mu_);
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                       bounds_.begin());
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(const std::string& name, const std::string& help, std::string& out) const {
  std::lock_guard lock(mu_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name,
                     sum_, name, count_);
}

namespace {

// Latency buckets from 1 ms to 60 s.
std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

template <class K>
void bump(std::vector<std::pair<K, uint64_t>>& v, const K& key) {
  for (auto& [k, n] : v)
    if (k == key) return void(++n);
  v.emplace_back(key, 1);
}

void gauge(std::string& out, const char* name, const char* help, const char* type, int64_t value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}

}  // namespace

Metrics::Metrics() : ttft_(latency_buckets()), itl_(latency_buckets()), e2e_(latency_buckets()) {}

void Metrics::request_started(const std::string& endpoint) {
  std::lock_guard lock(mu_);
  bump(requests_, endpoint);
}

void Metrics::request_failed(int status) {
  std::lock_guard lock(mu_);
  bump(failures_, status);
}

std::string Metrics::render(const EngineStats& e) const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    out +=
        "# HELP gemmax_requests_total Requests received, by endpoint.\n# TYPE "
        "gemmax_requests_total counter\n";
    for (const auto& [endpoint, n] : requests_)
      out += fmt::format("gemmax_requests_total{{endpoint=\"{}\"}} {}\n", endpoint, n);
    out +=
        "# HELP gemmax_request_errors_total Requests answered with an error, by HTTP status.\n"
        "# TYPE gemmax_request_errors_total counter\n";
    for (const auto& [status, n] : failures_)
      out += fmt::format("gemmax_request_errors_total{{status=\"{}\"}} {}\n", status, n);
  }
  gauge(out, "gemmax_prompt_tokens_total",
        "Prompt tokens run through prefill (recomputation included).", "counter", e.prompt_tokens);
  gauge(out, "gemmax_generation_tokens_total", "Tokens sampled.", "counter", e.generated_tokens);
  gauge(out, "gemmax_queue_depth", "Requests waiting to be admitted.", "gauge", e.waiting);
  gauge(out, "gemmax_running_sequences", "Sequences holding KV pages.", "gauge", e.running);
  gauge(out, "gemmax_kv_pages_used", "KV cache pages in use.", "gauge", e.kv_pages_used);
  gauge(out, "gemmax_kv_pages_total", "KV cache pages in the pool.", "gauge", e.kv_pages_total);
  gauge(out, "gemmax_preemptions_total", "Sequences preempted for KV pages.", "counter",
        e.preemptions);
  gauge(out, "gemmax_engine_steps_total", "Scheduler steps run.", "counter", e.steps);
  ttft_.render("gemmax_time_to_first_token_seconds",
               "Time from request arrival to its first token.", out);
  itl_.render("gemmax_inter_token_latency_seconds",
              "Time between consecutive tokens of one choice.", out);
  e2e_.render("gemmax_request_duration_seconds", "Time from request arrival to its last token.",
              out);
  return out;
}

}  // namespace gemmax::serve
