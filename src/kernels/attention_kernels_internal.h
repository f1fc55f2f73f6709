// Internal interface between attention_kernels.cc (the dispatch and the scalar path) and the AVX2
// kernels (attention_kernels_avx2.cc). Only call these when the CPU has AVX2+FMA+F16C.
#pragma once

#include <cstdint>

namespace gemmax::detail {

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
