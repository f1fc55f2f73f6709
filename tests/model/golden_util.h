// Helpers for the golden-logit tests: load a fixture's golden.json and run prompts through a model.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/gemma3_model.h"

namespace gemmax::testing {

inline std::string fixture(const std::string& rel) {
  return std::string(GEMMAX_SOURCE_DIR) + "/tests/fixtures/" + rel;
}

inline nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

// Logits at every position of `prompt`, run as one fresh sequence in one step.
inline std::vector<std::vector<float>> all_logits(Gemma3Model& model,
                                                  const std::vector<int32_t>& prompt,
                                                  PagedKVCache& cache) {
  const SeqId seq = cache.add_sequence();
  Gemma3Inputs in;
  in.add_row(seq, prompt);
  in.return_logits = ReturnLogits::kAll;
  Gemma3Outputs out = model.execute(in, cache);
  cache.release(seq);
  std::vector<std::vector<float>> rows;
  for (int64_t i = 0; i < out.num_logit_rows(); ++i)
    rows.emplace_back(out.row(i), out.row(i) + out.vocab_size);
  return rows;
}

// Logits at every position of `steps` run in turn on one sequence (a prefill, then decode steps).
inline std::vector<std::vector<float>> step_logits(Gemma3Model& model, PagedKVCache& cache,
                                                   SeqId seq,
                                                   const std::vector<std::vector<int32_t>>& steps) {
  std::vector<std::vector<float>> rows;
  for (const auto& step : steps) {
    Gemma3Inputs in;
    in.add_row(seq, step);
    in.return_logits = ReturnLogits::kAll;
    const Gemma3Outputs out = model.execute(in, cache);
    for (int64_t i = 0; i < out.num_logit_rows(); ++i)
      rows.emplace_back(out.row(i), out.row(i) + out.vocab_size);
  }
  return rows;
}

// Whether two runs' logits are the same bits, row by row; the message names the first that is not.
inline ::testing::AssertionResult same_bits(const std::vector<std::vector<float>>& a,
                                            const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " logit rows";
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() ||
        std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0)
      return ::testing::AssertionFailure() << "logit row " << i << " differs";
  return ::testing::AssertionSuccess();
}

}  // namespace gemmax::testing
