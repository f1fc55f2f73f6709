#include "pipeline/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

namespace gemmax {
namespace {

std::vector<float> logits_of_probs(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

SamplingParams seeded(uint64_t seed = 7) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

// Frequencies of `draws` samples (a fresh Sampler per call keeps penalties out of it).
std::map<int32_t, double> histogram(const SamplingParams& p, const std::vector<float>& logits,
                                    int draws) {
  Sampler s(p, {});
  std::map<int32_t, double> h;
  for (int i = 0; i < draws; ++i) h[s.sample(logits)] += 1.0 / draws;
  return h;
}

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p, {});
  EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 3.0f}), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p = seeded();
  p.top_k = 1;
  Sampler s(p, {});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(std::vector<float>{0.0f, 0.1f, 0.05f}), 1);
}

TEST(Sampler, LogitBiasMovesTheArgmax) {
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{2, 5.0}};
  Sampler s(p, {});
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 2.0f, -1.0f}), 2);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0;
  // Token 0 (3.0, in the prompt) becomes 1.5 < token 1's 2.0.
  Sampler s(p, std::vector<int32_t>{0});
  EXPECT_EQ(s.sample(std::vector<float>{3.0f, 2.0f}), 1);
  // Negative logits get more negative: -0.5 -> -1.0 < -0.9.
  Sampler t(p, std::vector<int32_t>{0});
  EXPECT_EQ(t.sample(std::vector<float>{-0.5f, -0.9f}), 1);
  // Without the penalty the prompt token would win.
  p.repetition_penalty = 1.0;
  Sampler u(p, std::vector<int32_t>{0});
  EXPECT_EQ(u.sample(std::vector<float>{3.0f, 2.0f}), 0);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountGeneratedTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.frequency_penalty = 0.4;
  Sampler s(p, std::vector<int32_t>{1});  // prompt tokens do not count
  const std::vector<float> l{1.0f, 0.5f};
  EXPECT_EQ(s.sample(l), 0);
  s.accept(0);  // 1.0 - 0.4 = 0.6 > 0.5
  EXPECT_EQ(s.sample(l), 0);
  s.accept(0);  // 1.0 - 0.8 = 0.2 < 0.5
  EXPECT_EQ(s.sample(l), 1);

  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 0.6;
  Sampler t(q, {});
  t.accept(0);  // 1.0 - 0.6 = 0.4 < 0.5, whatever the count
  EXPECT_EQ(t.sample(l), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> l(50);
  for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(i % 7) * 0.3f;
  auto run = [&](uint64_t seed, uint64_t offset) {
    Sampler s(seeded(seed), {}, offset);
    std::vector<int32_t> ids;
    for (int i = 0; i < 40; ++i) ids.push_back(s.sample(l));
    return ids;
  };
  EXPECT_EQ(run(1, 0), run(1, 0));
  EXPECT_NE(run(1, 0), run(2, 0));
  EXPECT_NE(run(1, 0), run(1, 1));  // the n choices of one request differ
}

// With 40000 draws a frequency's standard deviation is at most 0.0025; 0.015 is 6 sigma.
constexpr int kDraws = 40000;
constexpr double kTol = 0.015;

TEST(Sampler, DrawsFollowTheSoftmax) {
  const auto h = histogram(seeded(), logits_of_probs({0.5, 0.3, 0.2}), kDraws);
  EXPECT_NEAR(h.at(0), 0.5, kTol);
  EXPECT_NEAR(h.at(1), 0.3, kTol);
  EXPECT_NEAR(h.at(2), 0.2, kTol);
}

TEST(Sampler, DrawsOverVectorWidthsFollowTheSoftmax) {
  // 19 tokens: two 8-wide vector blocks and a scalar tail of the exp; token 17 (in the tail) has
  // half the mass, token 3 a quarter, the other 17 share the last quarter.
  std::vector<double> probs(19, 0.25 / 17);
  probs[17] = 0.5;
  probs[3] = 0.25;
  SamplingParams p = seeded();
  p.temperature = 2.0;  // sqrt(p) renormalised
  double z = 0;
  for (double q : probs) z += std::sqrt(q);
  const auto h = histogram(p, logits_of_probs(probs), kDraws);
  EXPECT_NEAR(h.at(17), std::sqrt(0.5) / z, kTol);
  EXPECT_NEAR(h.at(3), std::sqrt(0.25) / z, kTol);
}

TEST(Sampler, DrawsAcrossSkippedBlocksFollowTheSoftmax) {
  // 3000 tokens: the draw skips whole blocks of 512 ids by their mass. The mass sits in the
  // first block (id 5), on a block edge (511, 512), in the scalar tail (2999) and spread thin
  // over everything; with min_p the thin mass drops out and the rest renormalises.
  std::vector<double> probs(3000, 0.2 / 2996);
  probs[5] = 0.3;
  probs[511] = 0.1;
  probs[512] = 0.15;
  probs[2999] = 0.25;
  const auto h = histogram(seeded(), logits_of_probs(probs), kDraws);
  EXPECT_NEAR(h.at(5), 0.3, kTol);
  EXPECT_NEAR(h.at(511), 0.1, kTol);
  EXPECT_NEAR(h.at(512), 0.15, kTol);
  EXPECT_NEAR(h.at(2999), 0.25, kTol);
  double thin = 0;
  for (const auto& [id, f] : h)
    if (id != 5 && id != 511 && id != 512 && id != 2999) thin += f;
  EXPECT_NEAR(thin, 0.2, kTol);

  SamplingParams p = seeded();
  p.min_p = 0.01;  // of the best's 0.3: drops the 0.2 / 2996 ids
  const auto kept = histogram(p, logits_of_probs(probs), kDraws);
  EXPECT_EQ(kept.size(), 4u);
  EXPECT_NEAR(kept.at(5), 0.375, kTol);
  EXPECT_NEAR(kept.at(2999), 0.3125, kTol);
}

TEST(Sampler, TinyTemperatureDrawsTheArgmaxWithoutOverflow) {
  // (logit - max) / T first: logit / T alone would overflow to inf (and inf - inf to NaN).
  SamplingParams p = seeded();
  p.temperature = 1e-30;
  std::vector<float> l(40, 3.0e9f);
  l[29] = 3.1e9f;
  const auto h = histogram(p, l, 50);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, 29);
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  SamplingParams p = seeded();
  p.temperature = 0.5;  // p^2 renormalised: .25/.38, .09/.38, .04/.38
  auto h = histogram(p, logits_of_probs({0.5, 0.3, 0.2}), kDraws);
  EXPECT_NEAR(h.at(0), 0.25 / 0.38, kTol);
  EXPECT_NEAR(h.at(2), 0.04 / 0.38, kTol);
  p.temperature = 100;  // nearly uniform
  h = histogram(p, logits_of_probs({0.5, 0.3, 0.2}), kDraws);
  EXPECT_NEAR(h.at(2), 1.0 / 3, kTol);
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  SamplingParams p = seeded();
  p.top_k = 2;
  const auto h = histogram(p, logits_of_probs({0.1, 0.4, 0.2, 0.3}), kDraws);
  EXPECT_EQ(h.count(0), 0u);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_NEAR(h.at(1), 0.4 / 0.7, kTol);
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  SamplingParams p = seeded();
  p.top_p = 0.75;  // 0.4 + 0.3 = 0.7 < 0.75, so 0.2 joins; 0.1 does not
  const auto h = histogram(p, logits_of_probs({0.1, 0.4, 0.2, 0.3}), kDraws);
  EXPECT_EQ(h.count(0), 0u);
  EXPECT_NEAR(h.at(2), 0.2 / 0.9, kTol);
}

TEST(Sampler, TopPOnALargeVocabularyGrowsTheSortedPrefix) {
  // 1000 equally likely tokens: top_p 0.5 needs 500 of them, more than the first sorted prefix.
  SamplingParams p = seeded();
  p.top_p = 0.5;
  const auto h = histogram(p, std::vector<float>(1000, 0.0f), 4000);
  for (const auto& [id, f] : h) EXPECT_LT(id, 500);  // ties broken toward lower ids
  EXPECT_GT(h.size(), 450u);
}

TEST(Sampler, FullVocabularyDrawIsFast) {
  // Plain temperature sampling over Gemma's 262k vocabulary must not sort it (a full sort costs
  // tens of ms per token); 200 draws in well under a second leaves a wide margin.
  std::vector<float> l(262144);
  for (size_t i = 0; i < l.size(); ++i)
    l[i] = static_cast<float>((i * 2654435761u) % 1000) / 100.0f;
  Sampler s(seeded(), {});
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) s.sample(l);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
}

TEST(Sampler, MinPDropsTokensBelowTheFraction) {
  SamplingParams p = seeded();
  p.min_p = 0.5;  // max 0.4: keeps >= 0.2
  const auto h = histogram(p, logits_of_probs({0.1, 0.4, 0.2, 0.3}), kDraws);
  EXPECT_EQ(h.count(0), 0u);
  EXPECT_NEAR(h.at(1), 0.4 / 0.9, kTol);
}

TEST(Sampler, LogprobsAreLogSoftmaxWithSortedAlternatives) {
  const std::vector<float> l{1.0f, 3.0f, 2.0f, 3.0f};
  double z = 0;
  for (float x : l) z += std::exp(static_cast<double>(x));
  const TokenLogprob lp = token_logprob(l, 2, 3);
  EXPECT_NEAR(lp.logprob, 2.0 - std::log(z), 1e-5);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].first, 1);  // tie with 3: lower id first
  EXPECT_EQ(lp.top[1].first, 3);
  EXPECT_EQ(lp.top[2].first, 2);
  EXPECT_NEAR(lp.top[0].second, 3.0 - std::log(z), 1e-5);
  EXPECT_TRUE(token_logprob(l, 0, 0).top.empty());
}

TEST(Sampler, LogprobsOverALargeVocabularyMatchASortAndDoubleSums) {
  // 70001 logits with many ties and a few -inf (banned ids): the normaliser against an f64 sum of
  // libm exps, the top 20 against a full sort (value descending, then id ascending).
  std::vector<float> l(70001);
  for (size_t i = 0; i < l.size(); ++i)
    l[i] = static_cast<float>((i * 2654435761u) % 997) / 50.0f - 10.0f;
  l[5] = l[70000] = -INFINITY;
  l[123] = 12.5f;
  l[60000] = 12.5f;
  const float max = 12.5f;
  double z = 0;
  for (float x : l) z += std::exp(static_cast<double>(x) - max);
  const double log_z = max + std::log(z);
  std::vector<int32_t> order(l.size());
  for (size_t i = 0; i < l.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  for (int top_n : {1, 7, 20}) {
    const TokenLogprob lp = token_logprob(l, 777, top_n);
    EXPECT_NEAR(lp.logprob, l[777] - log_z, 1e-5);
    ASSERT_EQ(lp.top.size(), static_cast<size_t>(top_n));
    for (int i = 0; i < top_n; ++i) {
      EXPECT_EQ(lp.top[i].first, order[i]) << i;
      EXPECT_NEAR(lp.top[i].second, l[order[i]] - log_z, 1e-5);
    }
  }
  EXPECT_EQ(token_logprob(l, 5, 2).logprob, -INFINITY);
}

TEST(SamplingParams, ValidateNamesTheField) {
  auto error_of = [](auto change) {
    SamplingParams p;
    change(p);
    try {
      p.validate(100);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("ok");
  };
  EXPECT_EQ(error_of([](SamplingParams&) {}), "ok");
  EXPECT_EQ(error_of([](SamplingParams& p) { p.temperature = -1; }).rfind("temperature:", 0), 0u);
  EXPECT_EQ(error_of([](SamplingParams& p) { p.top_p = 0; }).rfind("top_p:", 0), 0u);
  EXPECT_EQ(error_of([](SamplingParams& p) { p.top_k = -1; }).rfind("top_k:", 0), 0u);
  EXPECT_EQ(error_of([](SamplingParams& p) { p.min_p = 2; }).rfind("min_p:", 0), 0u);
  EXPECT_EQ(
      error_of([](SamplingParams& p) { p.repetition_penalty = 0; }).rfind("repetition_penalty:", 0),
      0u);
  EXPECT_EQ(
      error_of([](SamplingParams& p) { p.presence_penalty = 3; }).rfind("presence_penalty:", 0),
      0u);
  EXPECT_EQ(
      error_of([](SamplingParams& p) { p.frequency_penalty = NAN; }).rfind("frequency_penalty:", 0),
      0u);
  EXPECT_EQ(error_of([](SamplingParams& p) {
              p.logit_bias = {{100, 1.0}};
            }).rfind("logit_bias:", 0),
            0u);
  EXPECT_EQ(error_of([](SamplingParams& p) { p.max_tokens = -1; }).rfind("max_tokens:", 0), 0u);
  EXPECT_EQ(error_of([](SamplingParams& p) { p.logprobs = 21; }).rfind("logprobs:", 0), 0u);
  EXPECT_EQ(error_of([](SamplingParams& p) { p.stop = {""}; }).rfind("stop:", 0), 0u);
}

}  // namespace
}  // namespace gemmax
