// AVX-512 value loop of a decode step's attention: out_h += sum_j w_h[j] * rows[j] as in
// attention_kernels_avx2.cc, 16 floats per operation and twice the rows per pass (the 32
// registers hold 4 heads x 6 rows of weights). Per output element the FMAs run in the same row
// order as there, so the results are the same bits (an FMA rounds once whatever the width).
// Only call it on CPUs with AVX-512F (and AVX2+FMA+F16C).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/attention_kernels_internal.h"
#include "kernels/avx512_gcc12_warnings.h"

#define GEMMAX_AVX512_ATTN __attribute__((target("avx512f,avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

GEMMAX_AVX512_ATTN inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
GEMMAX_AVX512_ATTN inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
GEMMAX_AVX512_ATTN inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
GEMMAX_AVX512_ATTN inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
GEMMAX_AVX512_ATTN inline float load1(float v) { return v; }
GEMMAX_AVX512_ATTN inline float load1(uint16_t h) { return _cvtsh_ss(h); }

// Rows [j, j + R) for H heads: 16-float pieces, then an 8-float piece, then single elements (the
// AVX2 loop's 8-float pieces and scalar tail, so every element sees the same FMAs).
template <int H, int R, class Row>
GEMMAX_AVX512_ATTN inline void rows_pass(const float* w, int64_t w_stride, const Row* const* rows,
                                         int64_t j, int64_t n, float* out, int64_t out_stride,
                                         int64_t ahead) {
  constexpr int64_t kAhead = 4;                                         // rows
  constexpr int64_t kPerLine = 64 / static_cast<int64_t>(sizeof(Row));  // elements per line
  const int64_t n16 = n / 16 * 16, n8 = n / 8 * 8;
  __m512 a[H][R];
  for (int h = 0; h < H; ++h)
    for (int r = 0; r < R; ++r) a[h][r] = _mm512_set1_ps(w[h * w_stride + j + r]);
  for (int64_t d = 0; d < n16; d += 16) {
    if (d % kPerLine == 0)
      for (int64_t r = 0; r < ahead; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[j + kAhead + r] + d), _MM_HINT_T0);
    __m512 v[R];
    for (int r = 0; r < R; ++r) v[r] = load16(rows[j + r] + d);
    for (int h = 0; h < H; ++h) {
      __m512 acc = _mm512_loadu_ps(out + h * out_stride + d);
      for (int r = 0; r < R; ++r) acc = _mm512_fmadd_ps(a[h][r], v[r], acc);
      _mm512_storeu_ps(out + h * out_stride + d, acc);
    }
  }
  for (int64_t d = n16; d < n8; d += 8)
    for (int h = 0; h < H; ++h) {
      __m256 acc = _mm256_loadu_ps(out + h * out_stride + d);
      for (int r = 0; r < R; ++r)
        acc = _mm256_fmadd_ps(_mm512_castps512_ps256(a[h][r]), load8(rows[j + r] + d), acc);
      _mm256_storeu_ps(out + h * out_stride + d, acc);
    }
  for (int64_t d = n8; d < n; ++d)
    for (int h = 0; h < H; ++h)
      for (int r = 0; r < R; ++r)
        out[h * out_stride + d] =
            std::fma(w[h * w_stride + j + r], load1(rows[j + r][d]), out[h * out_stride + d]);
}

template <int H, int R, class Row>
GEMMAX_AVX512_ATTN void value_rows(const float* w, int64_t w_stride, const Row* const* rows,
                                   int64_t n_rows, int64_t n, float* out, int64_t out_stride,
                                   bool stream) {
  constexpr int64_t kAhead = 4;
  constexpr int64_t kPerLine = 64 / static_cast<int64_t>(sizeof(Row));
  if (stream)
    for (int64_t j = 0; j < std::min(n_rows, kAhead); ++j)
      for (int64_t d = 0; d < n; d += kPerLine)
        _mm_prefetch(reinterpret_cast<const char*>(rows[j] + d), _MM_HINT_T0);
  int64_t j = 0;
  for (; j + R <= n_rows; j += R) {
    const int64_t ahead = stream ? std::min<int64_t>(R, n_rows - j - kAhead) : 0;
    rows_pass<H, R>(w, w_stride, rows, j, n, out, out_stride, ahead);
  }
  for (; j < n_rows; ++j) rows_pass<H, 1>(w, w_stride, rows, j, n, out, out_stride, 0);
}

template <class Row>
GEMMAX_AVX512_ATTN void values_of(const float* w, int64_t w_stride, int64_t n_heads,
                                  const Row* const* rows, int64_t n_rows, int64_t n, float* out,
                                  int64_t out_stride, bool stream) {
  int64_t h = 0;
  for (; h + 4 <= n_heads; h += 4)
    value_rows<4, 6>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                     stream);
  for (; h + 2 <= n_heads; h += 2)
    value_rows<2, 10>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                      stream);
  if (h < n_heads)
    value_rows<1, 14>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                      stream);
}

}  // namespace

void attention_values_avx512(const float* w, int64_t w_stride, int64_t n_heads,
                             const float* const* rows, int64_t n_rows, int64_t n, float* out,
                             int64_t out_stride, bool stream) {
  values_of(w, w_stride, n_heads, rows, n_rows, n, out, out_stride, stream);
}

void attention_values_avx512(const float* w, int64_t w_stride, int64_t n_heads,
                             const uint16_t* const* rows, int64_t n_rows, int64_t n, float* out,
                             int64_t out_stride, bool stream) {
  values_of(w, w_stride, n_heads, rows, n_rows, n, out, out_stride, stream);
}

}  // namespace gemmax::detail
