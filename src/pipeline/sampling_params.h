// SamplingParams: how one request picks its tokens and when it stops. The fields follow the OpenAI
// API (and vLLM's extensions top_k, min_p, repetition_penalty) so the server maps them one to one.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gemmax {

struct SamplingParams {
  // 0 = greedy (argmax); otherwise logits are divided by it before top-k/top-p/min-p.
  double temperature = 1.0;
  int top_k = 0;       // 0 = all tokens
  double top_p = 1.0;  // nucleus: smallest set of tokens whose probability sums to >= top_p
  double min_p = 0.0;  // drop tokens whose probability is below min_p * max probability
  // HF/CTRL style over prompt + generated ids: positive logits divided by it, negative multiplied.
  double repetition_penalty = 1.0;
  // OpenAI style over generated ids: logit -= presence * [count > 0] + frequency * count.
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  std::map<int32_t, double> logit_bias;  // added to the raw logits
  std::optional<uint64_t> seed;          // same seed, same tokens; unset: a random seed
  int max_tokens = 16;                   // generated tokens at most (the context may end it sooner)
  std::vector<std::string> stop;         // stop strings: the text ends before the first match
  bool ignore_eos = false;               // keep going past the model's stop ids
  int logprobs = -1;         // -1: none; 0..20: chosen token's logprob + that many alternatives
  int prompt_logprobs = -1;  // -1: none; 0..20: the same for every prompt token (echo)

  static constexpr int kMaxLogprobs = 20;

  // Throws std::invalid_argument whose message starts with the offending field name and a colon
  // ("top_p: must be in (0, 1]"). `vocab_size` bounds logit_bias ids.
  void validate(int64_t vocab_size) const;
  bool greedy() const { return temperature == 0.0 || top_k == 1; }
};

}  // namespace gemmax
