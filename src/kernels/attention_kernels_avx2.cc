// AVX2 attention inner loops. Scores: register tiles of up to 4 heads x 2 keys (2 x 4, 1 x 8), one
// accumulator per (head, key) pair over the head dimension, so each key vector is loaded once for
// all the group's heads and each query vector once for all the tile's keys (dot_f32 per pair read
// two vectors per multiply-add and was load-bound). Values: two heads per pass over the rows, 32
// output floats of each in registers. Compiled with a target attribute like matmul_avx2.cc.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/attention_kernels_internal.h"

#define GEMMAX_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

// 8 (or 1) key / value elements as f32: f32 as they are, f16 (an F16 KV cache) converted.
GEMMAX_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
GEMMAX_AVX2 inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
GEMMAX_AVX2 inline float load1(float v) { return v; }
GEMMAX_AVX2 inline float load1(uint16_t h) { return _cvtsh_ss(h); }

// The lanes of one accumulator summed as ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7)).
GEMMAX_AVX2 inline float reduce8(__m256 a) {
  __m256 t = _mm256_hadd_ps(a, a);
  t = _mm256_hadd_ps(t, t);
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
}

// Lane i = reduce8(a[i]) for eight accumulators at once, in the same order of additions.
GEMMAX_AVX2 inline __m256 reduce8x8(const __m256* a) {
  const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
}

// Scores of H heads x K keys. Per pair: one accumulator over the 8-element groups of the head
// dimension, reduce8, the tail elements by fma in order, times scale: the same operations for
// every tile shape.
template <int H, int K, class Key>
GEMMAX_AVX2 inline void score_tile(const float* q, int64_t hd, const Key* const* keys, float scale,
                                   float* scores, int64_t score_stride) {
  __m256 acc[H * K];
  for (int i = 0; i < H * K; ++i) acc[i] = _mm256_setzero_ps();
  int64_t d = 0;
  for (; d + 8 <= hd; d += 8) {
    __m256 kv[K];
    for (int k = 0; k < K; ++k) kv[k] = load8(keys[k] + d);
    for (int h = 0; h < H; ++h) {
      __m256 qv = _mm256_loadu_ps(q + h * hd + d);
      if constexpr (K > 1) asm("" : "+x"(qv));  // loaded once for the K keys, not once per fma
      for (int k = 0; k < K; ++k) acc[h * K + k] = _mm256_fmadd_ps(qv, kv[k], acc[h * K + k]);
    }
  }
  alignas(32) float r[H * K];
  if constexpr (H * K == 8) {
    _mm256_store_ps(r, reduce8x8(acc));
  } else {
    for (int i = 0; i < H * K; ++i) r[i] = reduce8(acc[i]);
  }
  for (int h = 0; h < H; ++h)
    for (int k = 0; k < K; ++k) {
      float s = r[h * K + k];
      for (int64_t e = d; e < hd; ++e) s = std::fma(q[h * hd + e], load1(keys[k][e]), s);
      scores[h * score_stride + k] = s * scale;
    }
}

// Asks for the cache lines of key rows [j0, j1) (a decode step streams its keys from memory; the
// hardware prefetcher alone left the scores ~20% slower than a one-key-at-a-time dot product).
template <class Key>
GEMMAX_AVX2 inline void prefetch_keys(const Key* const* keys, int64_t hd, int64_t j0, int64_t j1) {
  const int64_t row_bytes = hd * static_cast<int64_t>(sizeof(Key));
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t b = 0; b < row_bytes; b += 64)
      _mm_prefetch(reinterpret_cast<const char*>(keys[j]) + b, _MM_HINT_T0);
}

template <int H, int K, class Key>
GEMMAX_AVX2 void score_heads(const float* q, int64_t hd, const Key* const* keys, int64_t n_keys,
                             float scale, float* scores, int64_t score_stride, bool stream) {
  constexpr int64_t kAhead = 4;  // key rows
  if (stream) prefetch_keys(keys, hd, 0, std::min(n_keys, kAhead));
  int64_t j = 0;
  for (; j + K <= n_keys; j += K) {
    if (stream)
      prefetch_keys(keys, hd, std::min(n_keys, j + kAhead), std::min(n_keys, j + K + kAhead));
    score_tile<H, K>(q, hd, keys + j, scale, scores + j, score_stride);
  }
  for (; j < n_keys; ++j) score_tile<H, 1>(q, hd, keys + j, scale, scores + j, score_stride);
}

template <class Key>
GEMMAX_AVX2 void scores_of(const float* q, int64_t n_heads, int64_t hd, const Key* const* keys,
                           int64_t n_keys, float scale, float* scores, int64_t score_stride,
                           bool stream) {
  int64_t h = 0;
  for (; h + 4 <= n_heads; h += 4)
    score_heads<4, 2>(q + h * hd, hd, keys, n_keys, scale, scores + h * score_stride, score_stride,
                      stream);
  const float* qh = q + h * hd;
  float* sh = scores + h * score_stride;
  switch (n_heads - h) {
    case 3:
      return score_heads<3, 2>(qh, hd, keys, n_keys, scale, sh, score_stride, stream);
    case 2:
      return score_heads<2, 4>(qh, hd, keys, n_keys, scale, sh, score_stride, stream);
    case 1:
      return score_heads<1, 8>(qh, hd, keys, n_keys, scale, sh, score_stride, stream);
    default:
      return;
  }
}

// out_h[0 .. 8 kRegs) += sum_j w_h[j] * rows[j][d ...] for H heads: each value vector is loaded
// once for the H heads; per element the fmas run in j order, as n_rows axpy calls would.
template <int H, int kRegs, class Row>
GEMMAX_AVX2 inline void value_slice(const float* w, int64_t w_stride, const Row* const* rows,
                                    int64_t n_rows, int64_t d, float* out, int64_t out_stride) {
  __m256 acc[H][kRegs];
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < kRegs; ++i) acc[h][i] = _mm256_loadu_ps(out + h * out_stride + 8 * i);
  for (int64_t j = 0; j < n_rows; ++j) {
    __m256 v[kRegs];
    for (int i = 0; i < kRegs; ++i) {
      v[i] = load8(rows[j] + d + 8 * i);
      if constexpr (H > 1) asm("" : "+x"(v[i]));  // loaded once for the H heads
    }
    for (int h = 0; h < H; ++h) {
      const __m256 a = _mm256_set1_ps(w[h * w_stride + j]);
      for (int i = 0; i < kRegs; ++i) acc[h][i] = _mm256_fmadd_ps(a, v[i], acc[h][i]);
    }
  }
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < kRegs; ++i) _mm256_storeu_ps(out + h * out_stride + 8 * i, acc[h][i]);
}

// Rows are taken 16 at a time (16 KB of f32 values for Gemma 3's 256-wide heads), every slice of
// the output passing over them while they are in L1: a decode step streams its values from memory,
// and a whole page's rows per slice made every slice miss again. Per element the FMAs still run in
// row order (out is stored and reloaded between row blocks, exactly). Slices are 8 x kRegs floats
// (H x kRegs accumulators in registers).
template <int H, int kRegs, class Row>
GEMMAX_AVX2 void value_heads(const float* w, int64_t w_stride, const Row* const* rows,
                             int64_t n_rows, int64_t n, float* out, int64_t out_stride,
                             bool stream) {
  constexpr int64_t kRowBlock = 16, kSlice = 8 * kRegs;
  constexpr int64_t kSliceBytes = kSlice * static_cast<int64_t>(sizeof(Row));
  for (int64_t j0 = 0; j0 < n_rows; j0 += kRowBlock) {
    const int64_t nj = std::min(kRowBlock, n_rows - j0);
    const Row* const* r = rows + j0;
    const float* wj = w + j0;
    const int64_t next =
        stream ? std::min(kRowBlock, n_rows - j0 - nj) : 0;  // the next block's rows
    int64_t d = 0;
    for (; d + kSlice <= n; d += kSlice) {
      // The next block's lines of this slice, once per 64 bytes (a slice of f16 is half a line).
      const int64_t at = d * static_cast<int64_t>(sizeof(Row));
      if (at % 64 == 0)
        for (int64_t j = 0; j < next; ++j)
          for (int64_t b = 0; b < std::max<int64_t>(kSliceBytes, 64); b += 64)
            _mm_prefetch(reinterpret_cast<const char*>(r[nj + j]) + at + b, _MM_HINT_T0);
      value_slice<H, kRegs>(wj, w_stride, r, nj, d, out + d, out_stride);
    }
    for (; d + 8 <= n; d += 8) value_slice<H, 1>(wj, w_stride, r, nj, d, out + d, out_stride);
    for (; d < n; ++d)
      for (int h = 0; h < H; ++h)
        for (int64_t j = 0; j < nj; ++j)
          out[h * out_stride + d] =
              std::fma(wj[h * w_stride + j], load1(r[j][d]), out[h * out_stride + d]);
  }
}

// Four heads per pass where the group has them (270M, 1B: 4 query heads per kv head), so each
// value row is read and converted once for all of them (two passes of two heads read them twice);
// pairs then single heads for the rest.
template <class Row>
GEMMAX_AVX2 void values_of(const float* w, int64_t w_stride, int64_t n_heads,
                           const Row* const* rows, int64_t n_rows, int64_t n, float* out,
                           int64_t out_stride, bool stream) {
  int64_t h = 0;
  for (; h + 4 <= n_heads; h += 4)
    value_heads<4, 2>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                      stream);
  for (; h + 2 <= n_heads; h += 2)
    value_heads<2, 4>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                      stream);
  if (h < n_heads)
    value_heads<1, 4>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                      stream);
}

}  // namespace

GEMMAX_AVX2 void attention_scores_avx2(const float* q, int64_t n_heads, int64_t head_dim,
                                       const float* const* keys, int64_t n_keys, float scale,
                                       float* scores, int64_t score_stride, bool stream) {
  scores_of(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride, stream);
}

GEMMAX_AVX2 void attention_scores_avx2(const float* q, int64_t n_heads, int64_t head_dim,
                                       const uint16_t* const* keys, int64_t n_keys, float scale,
                                       float* scores, int64_t score_stride, bool stream) {
  scores_of(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride, stream);
}

GEMMAX_AVX2 void attention_values_avx2(const float* w, int64_t w_stride, int64_t n_heads,
                                       const float* const* rows, int64_t n_rows, int64_t n,
                                       float* out, int64_t out_stride, bool stream) {
  values_of(w, w_stride, n_heads, rows, n_rows, n, out, out_stride, stream);
}

GEMMAX_AVX2 void attention_values_avx2(const float* w, int64_t w_stride, int64_t n_heads,
                                       const uint16_t* const* rows, int64_t n_rows, int64_t n,
                                       float* out, int64_t out_stride, bool stream) {
  values_of(w, w_stride, n_heads, rows, n_rows, n, out, out_stride, stream);
}

}  // namespace gemmax::detail
