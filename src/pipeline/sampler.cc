#include "pipeline/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "kernels/elementwise.h"

namespace gemmax {
namespace {

void require(bool ok, const char* field, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(field) + ": " + what);
}

// More likely first; equal values: lower id first, so results never depend on sort stability.
struct ByValueDesc {
  const float* v;
  bool operator()(int32_t a, int32_t b) const { return v[a] != v[b] ? v[a] > v[b] : a < b; }
};

int32_t argmax(std::span<const float> x) {  // the lowest id on ties (a vector kernel)
  return static_cast<int32_t>(gemmax::argmax(x.data(), static_cast<int64_t>(x.size())));
}

// Whether an unsorted draw counts weight w: at least min_p's floor, and not zero.
bool counted(float w, float floor) { return w >= floor && w != 0; }

// The mass of weights[begin, end) that a draw counts, in 8 independent partial sums: one chain of
// 262k dependent additions took ~0.35 ms of each sampled token.
double kept_mass_of(const std::vector<float>& weights, size_t begin, size_t end, float floor) {
  double part[8] = {};
  size_t i = begin;
  for (; i + 8 <= end; i += 8)
    for (size_t l = 0; l < 8; ++l) part[l] += counted(weights[i + l], floor) ? weights[i + l] : 0;
  for (; i < end; ++i) part[0] += counted(weights[i], floor) ? weights[i] : 0;
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace

void SamplingParams::validate(int64_t vocab_size) const {
  require(std::isfinite(temperature) && temperature >= 0 && temperature <= 100, "temperature",
          "must be in [0, 100]");
  require(top_k >= 0, "top_k", "must not be negative (0 = disabled)");
  require(std::isfinite(top_p) && top_p > 0 && top_p <= 1, "top_p", "must be in (0, 1]");
  require(std::isfinite(min_p) && min_p >= 0 && min_p <= 1, "min_p", "must be in [0, 1]");
  require(std::isfinite(repetition_penalty) && repetition_penalty > 0 && repetition_penalty <= 100,
          "repetition_penalty", "must be in (0, 100]");
  require(std::isfinite(presence_penalty) && std::abs(presence_penalty) <= 2, "presence_penalty",
          "must be in [-2, 2]");
  require(std::isfinite(frequency_penalty) && std::abs(frequency_penalty) <= 2, "frequency_penalty",
          "must be in [-2, 2]");
  for (const auto& [id, bias] : logit_bias) {
    require(id >= 0 && id < vocab_size, "logit_bias",
            "token id " + std::to_string(id) + " is outside the vocabulary");
    require(std::isfinite(bias) && std::abs(bias) <= 100, "logit_bias",
            "biases must be in [-100, 100]");
  }
  require(max_tokens >= 0, "max_tokens", "must not be negative");
  require(logprobs >= -1 && logprobs <= kMaxLogprobs, "logprobs", "must be in [0, 20]");
  require(prompt_logprobs >= -1 && prompt_logprobs <= kMaxLogprobs, "prompt_logprobs",
          "must be in [0, 20]");
  for (const std::string& s : stop) require(!s.empty(), "stop", "stop strings must not be empty");
}

// Per token of a request that asks for logprobs (and per prompt token with prompt_logprobs), so
// it is one pass for the normaliser (the kernels' vector exp, summed in f64) and one for the best
// top_n ids, without copying or sorting the 262k logits: libm's exp per logit and a sort of an id
// vector took ~2.2 ms per call (Gemma's vocabulary), as long as a 270M decode step's LM head.
TokenLogprob token_logprob(std::span<const float> logits, int32_t id, int top_n) {
  const float max = logits[static_cast<size_t>(argmax(logits))];
  const double sum = exp_sum(logits.data(), static_cast<int64_t>(logits.size()), max);
  const float log_z = max + static_cast<float>(std::log(sum));
  TokenLogprob out;
  out.id = id;
  out.logprob = logits[static_cast<size_t>(id)] - log_z;
  const size_t n = std::min(logits.size(), static_cast<size_t>(std::max(top_n, 0)));
  if (n > 0) {
    // The best n so far, most likely first; ids arrive in increasing order, so an equal value
    // never displaces an earlier id (ties: lower id first, as ByValueDesc orders them).
    std::vector<int32_t> best;
    best.reserve(n + 1);
    const ByValueDesc better{logits.data()};
    auto insert = [&](size_t i) {
      const auto cand = static_cast<int32_t>(i);
      best.insert(std::upper_bound(best.begin(), best.end(), cand, better), cand);
    };
    size_t i = 0;
    for (; best.size() < n; ++i) insert(i);
    float worst = logits[static_cast<size_t>(best.back())];
    for (; i < logits.size(); ++i) {
      if (!(logits[i] > worst)) continue;  // equal: a later id, not better
      insert(i);
      best.pop_back();
      worst = logits[static_cast<size_t>(best.back())];
    }
    for (const int32_t b : best) out.top.emplace_back(b, logits[static_cast<size_t>(b)] - log_z);
  }
  return out;
}

Sampler::Sampler(SamplingParams params, std::span<const int32_t> prompt, uint64_t seed_offset)
    : params_(std::move(params)) {
  const uint64_t seed =
      params_.seed ? *params_.seed : std::random_device{}() * 0x9E3779B97F4A7C15ull;
  // Choices of one request get distinct but reproducible streams.
  rng_.seed(seed + seed_offset * 0xD1B54A32D192ED03ull);
  if (params_.repetition_penalty != 1.0)
    for (int32_t id : prompt) ++seen_[id];
}

void Sampler::accept(int32_t id) {
  ++generated_[id];
  if (params_.repetition_penalty != 1.0) ++seen_[id];
}

void Sampler::apply_penalties(std::vector<float>& logits) const {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  for (const auto& [id, bias] : params_.logit_bias)
    if (id < vocab) logits[static_cast<size_t>(id)] += static_cast<float>(bias);
  const auto rp = static_cast<float>(params_.repetition_penalty);
  for (const auto& [id, count] : seen_) {
    float& x = logits[static_cast<size_t>(id)];
    x = x > 0 ? x / rp : x * rp;
  }
  if (params_.presence_penalty == 0 && params_.frequency_penalty == 0) return;
  for (const auto& [id, count] : generated_)
    logits[static_cast<size_t>(id)] -=
        static_cast<float>(params_.presence_penalty + params_.frequency_penalty * count);
}

// No top-k/top-p: one pass over the whole vocabulary, no ordering needed. After the shift by the
// max logit the most likely token has probability weight exactly 1, so min_p's floor is min_p.
// The draw skips whole blocks of ids whose mass u still exceeds, then walks the one it falls in.
int32_t Sampler::draw_unsorted(const std::vector<float>& weights, double total) {
  constexpr size_t kBlock = 512;
  const auto floor = static_cast<float>(params_.min_p);
  const size_t n = weights.size();
  if (floor > 0) total = kept_mass_of(weights, 0, n, floor);
  double u = uniform() * total;
  size_t b = 0;
  for (; b + kBlock <= n; b += kBlock) {
    const double mass = kept_mass_of(weights, b, b + kBlock, floor);
    if (u < mass) break;
    u -= mass;
  }
  for (size_t i = b; i < n; ++i) {
    if (!counted(weights[i], floor)) continue;
    u -= weights[i];
    if (u < 0) return static_cast<int32_t>(i);
  }
  // Rounding left a sliver of mass: the last kept id.
  for (size_t i = n; i-- > 0;)
    if (counted(weights[i], floor)) return static_cast<int32_t>(i);
  return 0;
}

double Sampler::uniform() {
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;  // 53 random bits in [0, 1)
}

int32_t Sampler::sample(std::span<const float> logits) {
  const bool penalised = !params_.logit_bias.empty() || params_.repetition_penalty != 1.0 ||
                         params_.presence_penalty != 0 || params_.frequency_penalty != 0;
  if (params_.greedy() && !penalised) return argmax(logits);  // no copy of the 262k logits
  work_.assign(logits.begin(), logits.end());
  apply_penalties(work_);
  if (params_.greedy()) return argmax(work_);
  return draw(work_);
}

// Temperature, then top-k, top-p and min-p over the softmax, then one draw. Only the head of the
// distribution is ever sorted: the prefix grows until it holds top_p of the mass, which for real
// models is a few dozen of the 262k ids.
int32_t Sampler::draw(std::vector<float>& logits) {
  const auto inv_t = static_cast<float>(1.0 / params_.temperature);
  const float max = logits[static_cast<size_t>(argmax(logits))];
  // Unnormalised probabilities exp((x - max) / T), the most likely exactly 1 (the difference
  // first, so a tiny T cannot overflow a large logit), through the kernels' vector exp: libm's exp
  // one logit at a time took ~2 ms of a 270M token (262k logits, a ~13 ms step).
  for (float& x : logits) x = (x - max) * inv_t;
  double total = exp_sub_sum(logits.data(), static_cast<int64_t>(logits.size()), 0.0f);
  const size_t vocab = logits.size();
  if (params_.top_k <= 0 && params_.top_p >= 1.0) return draw_unsorted(logits, total);
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  const ByValueDesc cmp{logits.data()};
  size_t keep = params_.top_k > 0 ? std::min(vocab, static_cast<size_t>(params_.top_k)) : vocab;
  if (keep < vocab) {
    std::nth_element(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(keep),
                     order_.end(), cmp);
    total = 0;
    for (size_t i = 0; i < keep; ++i) total += logits[static_cast<size_t>(order_[i])];
  }
  // Sort a growing prefix of the kept ids until it covers top_p of their mass.
  // Without top_p only the most likely id must come first (for min_p).
  size_t sorted = std::min<size_t>(keep, params_.top_p < 1.0 ? 64 : 1);
  if (params_.top_p >= 1.0)
    std::partial_sort(order_.begin(), order_.begin() + 1,
                      order_.begin() + static_cast<std::ptrdiff_t>(keep), cmp);
  while (params_.top_p < 1.0) {
    std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(sorted),
                      order_.begin() + static_cast<std::ptrdiff_t>(keep), cmp);
    double mass = 0;
    size_t i = 0;
    while (i < sorted && mass < params_.top_p * total)
      mass += logits[static_cast<size_t>(order_[i++])];
    if (mass >= params_.top_p * total || sorted == keep) {
      keep = std::max<size_t>(i, 1);
      break;
    }
    sorted = std::min(keep, sorted * 16);
  }
  // min_p compares with the most likely token (order_[0]: the sorted prefix is never empty). The
  // tail past the sorted prefix is unordered, which only changes which id a draw lands on, the
  // same way every time.
  const float floor = static_cast<float>(params_.min_p) * logits[static_cast<size_t>(order_[0])];
  size_t n = 0;
  double kept_mass = 0;
  for (size_t j = 0; j < keep; ++j) {
    const float p = logits[static_cast<size_t>(order_[j])];
    if (p < floor) continue;
    order_[n++] = order_[j];
    kept_mass += p;
  }
  double u = uniform() * kept_mass;
  for (size_t j = 0; j < n; ++j) {
    u -= logits[static_cast<size_t>(order_[j])];
    if (u < 0) return order_[j];
  }
  return order_[n - 1];  // rounding left a sliver of mass: the last kept id
}

}  // namespace gemmax
