#include "serve/metrics.h"

#include <gtest/gtest.h>

namespace gemmax::serve {
namespace {

TEST(Histogram, BucketsAreCumulativeWithSumAndCount) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(0.5);
  h.observe(7);
  std::string out;
  h.render("x_seconds", "help", out);
  EXPECT_NE(out.find("# TYPE x_seconds histogram\n"), std::string::npos);
  EXPECT_NE(out.find("x_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"1\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_sum 8.05\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_count 4\n"), std::string::npos) << out;
}

TEST(Metrics, RendersCountersAndEngineGauges) {
  Metrics m;
  m.request_started("completions");
  m.request_started("completions");
  m.request_failed(429);
  EngineStats s;
  s.waiting = 3;
  s.running = 2;
  s.kv_pages_used = 17;
  s.generated_tokens = 99;
  const std::string out = m.render(s);
  EXPECT_NE(out.find("gemmax_requests_total{endpoint=\"completions\"} 2\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("gemmax_request_errors_total{status=\"429\"} 1\n"), std::string::npos);
  EXPECT_NE(out.find("gemmax_queue_depth 3\n"), std::string::npos);
  EXPECT_NE(out.find("gemmax_running_sequences 2\n"), std::string::npos);
  EXPECT_NE(out.find("gemmax_kv_pages_used 17\n"), std::string::npos);
  EXPECT_NE(out.find("gemmax_generation_tokens_total 99\n"), std::string::npos);
  EXPECT_NE(out.find("gemmax_time_to_first_token_seconds_count 0\n"), std::string::npos);
}

}  // namespace
}  // namespace gemmax::serve
