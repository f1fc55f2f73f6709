#include "kernels/attention_kernels.h"

#include "kernels/attention_kernels_internal.h"
#include "kernels/cpu_features.h"
#include "kernels/matmul.h"
#include "tensor/half.h"

namespace gemmax {
namespace {

inline float as_f32(float v) { return v; }
inline float as_f32(uint16_t h) { return f16_to_f32(h); }

// The portable path (and the reference of the tests): one sequential sum per (head, key).
template <class Key>
void scores_scalar(const float* q, int64_t n_heads, int64_t head_dim, const Key* const* keys,
                   int64_t n_keys, float scale, float* scores, int64_t score_stride) {
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < n_keys; ++j) {
      float s = 0.0f;
      for (int64_t d = 0; d < head_dim; ++d) s += q[h * head_dim + d] * as_f32(keys[j][d]);
      scores[h * score_stride + j] = s * scale;
    }
}

template <class Row>
void values_scalar(const float* w, int64_t w_stride, int64_t n_heads, const Row* const* rows,
                   int64_t n_rows, int64_t n, float* out, int64_t out_stride) {
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < n_rows; ++j)
      for (int64_t d = 0; d < n; ++d)
        out[h * out_stride + d] += w[h * w_stride + j] * as_f32(rows[j][d]);
}

// One dispatch per loop for both key / value element types: on the avx2 path the AVX-512 kernels
// where the CPU has AVX-512F, else the AVX2 ones; the scalar reference otherwise.
template <class Key>
void scores_on_path(const float* q, int64_t n_heads, int64_t head_dim, const Key* const* keys,
                    int64_t n_keys, float scale, float* scores, int64_t score_stride, bool stream,
                    const Key* const* next_rows) {
  if (kernel_path() == KernelPath::kAvx2) {
    if (cpu_features().avx512f)
      return detail::attention_scores_avx512(q, n_heads, head_dim, keys, n_keys, scale, scores,
                                             score_stride, stream, next_rows);
    return detail::attention_scores_avx2(q, n_heads, head_dim, keys, n_keys, scale, scores,
                                         score_stride, stream, next_rows);
  }
  scores_scalar(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride);
}

template <class Row>
void values_on_path(const float* w, int64_t w_stride, int64_t n_heads, const Row* const* rows,
                    int64_t n_rows, int64_t n, float* out, int64_t out_stride, bool stream) {
  if (kernel_path() == KernelPath::kAvx2) {
    if (cpu_features().avx512f)
      return detail::attention_values_avx512(w, w_stride, n_heads, rows, n_rows, n, out, out_stride,
                                             stream);
    return detail::attention_values_avx2(w, w_stride, n_heads, rows, n_rows, n, out, out_stride,
                                         stream);
  }
  values_scalar(w, w_stride, n_heads, rows, n_rows, n, out, out_stride);
}

}  // namespace

void attention_scores(const float* q, int64_t n_heads, int64_t head_dim, const float* const* keys,
                      int64_t n_keys, float scale, float* scores, int64_t score_stride, bool stream,
                      const float* const* next_rows) {
  scores_on_path(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride, stream,
                 next_rows);
}

void attention_scores(const float* q, int64_t n_heads, int64_t head_dim,
                      const uint16_t* const* keys, int64_t n_keys, float scale, float* scores,
                      int64_t score_stride, bool stream, const uint16_t* const* next_rows) {
  scores_on_path(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride, stream,
                 next_rows);
}

void attention_values(const float* w, int64_t w_stride, int64_t n_heads, const float* const* rows,
                      int64_t n_rows, int64_t n, float* out, int64_t out_stride, bool stream) {
  values_on_path(w, w_stride, n_heads, rows, n_rows, n, out, out_stride, stream);
}

void attention_values(const float* w, int64_t w_stride, int64_t n_heads,
                      const uint16_t* const* rows, int64_t n_rows, int64_t n, float* out,
                      int64_t out_stride, bool stream) {
  values_on_path(w, w_stride, n_heads, rows, n_rows, n, out, out_stride, stream);
}

}  // namespace gemmax
