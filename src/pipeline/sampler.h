// Sampler: logits -> next token id for one sequence, applying SamplingParams in vLLM's order:
// logit_bias, penalties, then (unless greedy) temperature, top-k, top-p, min-p and a draw from the
// request's own seeded generator. Log probabilities are those of the raw model distribution
// (log_softmax of the unmodified logits), as OpenAI and vLLM report them.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pipeline/sampling_params.h"

namespace gemmax {

struct TokenLogprob {
  int32_t id = -1;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // best alternatives, most likely first
};

// log_softmax of `logits` at `id` and the `top_n` most likely ids (ties: lower id first).
TokenLogprob token_logprob(std::span<const float> logits, int32_t id, int top_n);

class Sampler {
 public:
  // `prompt` seeds the repetition-penalty history. `seed_offset` separates the n choices of one
  // request that share a seed.
  Sampler(SamplingParams params, std::span<const int32_t> prompt, uint64_t seed_offset = 0);

  // Picks the next id from one row of logits (size = vocab). Does not record it: call accept().
  int32_t sample(std::span<const float> logits);
  // Records a generated id for the penalties.
  void accept(int32_t id);

  const SamplingParams& params() const { return params_; }

 private:
  void apply_penalties(std::vector<float>& logits) const;
  int32_t draw(std::vector<float>& logits);
  int32_t draw_unsorted(const std::vector<float>& weights, double total);
  double uniform();

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> seen_;       // prompt + generated ids (repetition penalty)
  std::unordered_map<int32_t, int> generated_;  // generated ids -> count (presence/frequency)
  std::vector<float> work_;
  std::vector<int32_t> order_;
};

}  // namespace gemmax
