// Internal interface between attention_kernels.cc (the dispatch and the scalar path) and the AVX2
// kernels (attention_kernels_avx2.cc). Only call these when the CPU has AVX2+FMA+F16C.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace gemmax::detail {

// Asks for the cache lines of rows [j0, j1) (n elements each) with hint kHint; both vector score
// loops use it when a decode step streams its K/V from memory:
//  * _MM_HINT_T0, the key rows a few ahead (the hardware prefetcher alone left the scores ~20%
//    slower than a one-key-at-a-time dot product);
//  * _MM_HINT_T1, the value rows, into L2 in step with the keys (session 16), so that their memory
//    latency overlaps the scores' arithmetic; the value loop's own prefetches, a few rows ahead
//    into L1, then find them in L2. 270M Q4_0 at 512 + 128 tokens, 3 interleaved pairs of the
//    same binary: attention 0.66-0.74 -> 0.64-0.66 ms per token, decode 163-172 -> 172-179 tok/s;
//    1B Q4_0 within noise (1.21-1.35 vs 1.17-1.32 ms). Prefetching the keys further ahead the same
//    way (8 or 16 rows, on top of the 4 into L1) was slower.
template <int kHint, class Row>
inline void prefetch_rows(const Row* const* rows, int64_t n, int64_t j0, int64_t j1) {
  const int64_t row_bytes = n * static_cast<int64_t>(sizeof(Row));
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t b = 0; b < row_bytes; b += 64)
      _mm_prefetch(reinterpret_cast<const char*>(rows[j]) + b, static_cast<_mm_hint>(kHint));
}

void attention_scores_avx2(const float* q, int64_t n_heads, int64_t head_dim,
                           const float* const* keys, int64_t n_keys, float scale, float* scores,
                           int64_t score_stride, bool stream, const float* const* next_rows);
void attention_scores_avx2(const float* q, int64_t n_heads, int64_t head_dim,
                           const uint16_t* const* keys, int64_t n_keys, float scale, float* scores,
                           int64_t score_stride, bool stream, const uint16_t* const* next_rows);
void attention_values_avx2(const float* w, int64_t w_stride, int64_t n_heads,
                           const float* const* rows, int64_t n_rows, int64_t n, float* out,
                           int64_t out_stride, bool stream);
void attention_values_avx2(const float* w, int64_t w_stride, int64_t n_heads,
                           const uint16_t* const* rows, int64_t n_rows, int64_t n, float* out,
                           int64_t out_stride, bool stream);

// Scores with AVX-512 (attention_kernels_avx512.cc): 16-lane sums, so not the AVX2 loop's bits,
// but, as there, the same bits for a (head, key) pair whatever the call.
void attention_scores_avx512(const float* q, int64_t n_heads, int64_t head_dim,
                             const float* const* keys, int64_t n_keys, float scale, float* scores,
                             int64_t score_stride, bool stream, const float* const* next_rows);
void attention_scores_avx512(const float* q, int64_t n_heads, int64_t head_dim,
                             const uint16_t* const* keys, int64_t n_keys, float scale,
                             float* scores, int64_t score_stride, bool stream,
                             const uint16_t* const* next_rows);

// The same value loop with AVX-512 (attention_kernels_avx512.cc), the same bits. Only call these
// when the CPU also has AVX-512F.
void attention_values_avx512(const float* w, int64_t w_stride, int64_t n_heads,
                             const float* const* rows, int64_t n_rows, int64_t n, float* out,
                             int64_t out_stride, bool stream);
void attention_values_avx512(const float* w, int64_t w_stride, int64_t n_heads,
                             const uint16_t* const* rows, int64_t n_rows, int64_t n, float* out,
                             int64_t out_stride, bool stream);

}  // namespace gemmax::detail
