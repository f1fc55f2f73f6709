// Server metrics in the Prometheus text exposition format (version 0.0.4): counters, gauges read
// from the engine at scrape time, and latency histograms.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/engine.h"

namespace gemmax::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // `name`_bucket{le=...}, `name`_sum, `name`_count lines.
  void render(const std::string& name, const std::string& help, std::string& out) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void request_started(const std::string& endpoint);
  void request_failed(int status);
  void observe_ttft(double seconds) { ttft_.observe(seconds); }
  void observe_itl(double seconds) { itl_.observe(seconds); }
  void observe_e2e(double seconds) { e2e_.observe(seconds); }
  std::string render(const EngineStats& engine) const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, uint64_t>> requests_;  // endpoint -> count
  std::vector<std::pair<int, uint64_t>> failures_;          // status -> count
  Histogram ttft_, itl_, e2e_;
};

}  // namespace gemmax::serve
