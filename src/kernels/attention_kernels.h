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

// Rows are passed by pointer (rows[j] is key or value row j), so one call can run over the rows of
// several KV pages: the loops prefetch across page edges and keep their register tiles going,
// where one call per 16-row page restarted both at every page (270M decode at a 512-token
// context: attention 1.15 -> ~0.65 ms per token with 16-row pages).

// `stream`: the rows are likely not in cache (a decode step's K/V, evicted by the weights since
// the previous step), so the loops prefetch rows ahead; in a prefill they were just written or
// read, and the prefetches would only cost instructions.

// scores[h * score_stride + j] = scale * (q_h . keys[j]) for h < n_heads, j < n_keys, where q_h =
// q + h * head_dim; key rows are f32, or f16 from an F16 KV cache. `next_rows` (used when
// streaming): n_keys rows of head_dim elements that are read next (a decode step's value rows),
// asked for into L2 in step with the keys, so that their memory latency overlaps the scores.
void attention_scores(const float* q, int64_t n_heads, int64_t head_dim, const float* const* keys,
                      int64_t n_keys, float scale, float* scores, int64_t score_stride,
                      bool stream = false, const float* const* next_rows = nullptr);
void attention_scores(const float* q, int64_t n_heads, int64_t head_dim,
                      const uint16_t* const* keys, int64_t n_keys, float scale, float* scores,
                      int64_t score_stride, bool stream = false,
                      const uint16_t* const* next_rows = nullptr);

// out_h[d] += sum_j w_h[j] * rows[j][d] for j = 0..n_rows-1 in order, d < n, h < n_heads, with
// w_h = w + h * w_stride and out_h = out + h * out_stride: per head the same result as n_rows
// axpy calls (kernels/elementwise.h) in order, bit for bit.
void attention_values(const float* w, int64_t w_stride, int64_t n_heads, const float* const* rows,
                      int64_t n_rows, int64_t n, float* out, int64_t out_stride,
                      bool stream = false);
void attention_values(const float* w, int64_t w_stride, int64_t n_heads,
                      const uint16_t* const* rows, int64_t n_rows, int64_t n, float* out,
                      int64_t out_stride, bool stream = false);

}  // namespace gemmax
