// Gemma3Inputs: one step of a ragged batch (MAX's Gemma3Inputs). Row r is
// tokens[input_row_offsets[r] .. input_row_offsets[r+1]) and continues KV sequence seq_ids[r] at
// that sequence's current length.
#pragma once

#include <cstdint>
#include <vector>

#include "kv_cache/paged_kv_cache.h"
#include "model/gemma3_config.h"

namespace gemmax {

struct Gemma3Inputs {
  std::vector<int32_t> tokens;
  std::vector<int64_t> input_row_offsets{0};  // rows + 1 entries, first 0, last tokens.size()
  std::vector<SeqId> seq_ids;                 // the kv_cache_inputs: one sequence per row
  ReturnLogits return_logits = ReturnLogits::kLastToken;
  int64_t return_n_logits = 1;  // with kVariable: the last N tokens of every row

  int64_t num_rows() const { return static_cast<int64_t>(input_row_offsets.size()) - 1; }
  // Appends a row continuing `seq` with `row_tokens`.
  void add_row(SeqId seq, const std::vector<int32_t>& row_tokens) {
    tokens.insert(tokens.end(), row_tokens.begin(), row_tokens.end());
    input_row_offsets.push_back(static_cast<int64_t>(tokens.size()));
    seq_ids.push_back(seq);
  }
};

struct Gemma3Outputs {
  // [num_logit_rows, vocab] row-major.
  std::vector<float> logits;
  int64_t vocab_size = 0;
  // logit_row_offsets[r] .. logit_row_offsets[r+1] are the logit rows of input row r.
  std::vector<int64_t> logit_row_offsets{0};
  // Absolute position (in its sequence) of the token each logit row was computed at.
  std::vector<int64_t> positions;

  const float* row(int64_t i) const { return logits.data() + i * vocab_size; }
  int64_t num_logit_rows() const { return static_cast<int64_t>(positions.size()); }
};

}  // namespace gemmax
