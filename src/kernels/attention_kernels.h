// The two inner loops of attention over a run of cached keys: scores (query . key) and the
// weighted sum of value rows, for the query heads of one KV group at once, so each key and value
// row is loaded once for all of them.
//
// Batch invariance: every (head, key) score and every output element is computed by the same
// sequence of operations whatever the number of heads or keys in the call and wherever it falls
// in a register tile, so a token attended alone (decode, one head per call) and in a prefill (a
// whole group per call) gets bit-identical results.
#pragma once

#include <cstdint>

namespace gemmax {

// scores[h * score_stride + j] = scale * (q_h . key_j) for h < n_heads, j < n_keys, where q_h =
// q + h * head_dim and key_j = keys + j * key_stride (f32 elements, or f16 from an F16 KV cache).
void attention_scores(const float* q, int64_t n_heads, int64_t head_dim, const float* keys,
                      int64_t key_stride, int64_t n_keys, float scale, float* scores,
                      int64_t score_stride);
void attention_scores(const float* q, int64_t n_heads, int64_t head_dim, const uint16_t* keys,
                      int64_t key_stride, int64_t n_keys, float scale, float* scores,
                      int64_t score_stride);

// out_h[d] += sum_j w_h[j] * rows[j * row_stride + d] for j = 0..n_rows-1 in order, d < n, h <
// n_heads, with w_h = w + h * w_stride and out_h = out + h * out_stride: per head the same result
// as accumulate_rows (kernels/elementwise.h), bit for bit.
void attention_values(const float* w, int64_t w_stride, int64_t n_heads, const float* rows,
                      int64_t n_rows, int64_t row_stride, int64_t n, float* out,
                      int64_t out_stride);
void attention_values(const float* w, int64_t w_stride, int64_t n_heads, const uint16_t* rows,
                      int64_t n_rows, int64_t row_stride, int64_t n, float* out,
                      int64_t out_stride);

}  // namespace gemmax
