// AVX2 attention inner loops. Scores: register tiles of up to 4 heads x 2 keys (2 x 4, 1 x 8), one
// accumulator per (head, key) pair over the head dimension, so each key vector is loaded once for
// all the group's heads and each query vector once for all the tile's keys (dot_f32 per pair read
// two vectors per multiply-add and was load-bound). Values: whole rows a few at a time, for up to
// four heads per pass. Compiled with a target attribute like matmul_avx2.cc.
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

// When streaming (decode), key rows kAhead ahead into L1, kL2Ahead ahead into L2, and the value
// rows (next_rows) into L2 in step with the keys, for the values pass that follows. The L2 lead:
// the L1 misses a core keeps in flight cap what 4 rows of lead can stream; measured on the Zen 4
// host with this loop forced (attention per decoded token, `gemmax bench --prompt-tokens 512
// --profile`, interleaved pairs): 270M Q4_0 0.58-0.80 -> 0.52-0.66 ms, 4B Q4_0 4.28-4.63 ->
// 3.40-3.54. Prefetches change no result.
template <int H, int K, class Key>
GEMMAX_AVX2 void score_heads(const float* q, int64_t hd, const Key* const* keys, int64_t n_keys,
                             float scale, float* scores, int64_t score_stride, bool stream,
                             const Key* const* next_rows) {
  constexpr int64_t kAhead = 4;     // key rows into L1
  constexpr int64_t kL2Ahead = 16;  // key rows into L2
  if (!stream) next_rows = nullptr;
  if (stream) prefetch_rows<_MM_HINT_T0>(keys, hd, 0, std::min(n_keys, kAhead));
  int64_t j = 0;
  for (; j + K <= n_keys; j += K) {
    if (stream)
      prefetch_rows<_MM_HINT_T0>(keys, hd, std::min(n_keys, j + kAhead),
                                 std::min(n_keys, j + K + kAhead));
    if (stream)
      prefetch_rows<_MM_HINT_T1>(keys, hd, std::min(n_keys, j + kL2Ahead),
                                 std::min(n_keys, j + K + kL2Ahead));
    if (next_rows != nullptr) prefetch_rows<_MM_HINT_T1>(next_rows, hd, j, j + K);
    score_tile<H, K>(q, hd, keys + j, scale, scores + j, score_stride);
  }
  if (next_rows != nullptr) prefetch_rows<_MM_HINT_T1>(next_rows, hd, j, n_keys);
  for (; j < n_keys; ++j) score_tile<H, 1>(q, hd, keys + j, scale, scores + j, score_stride);
}

// next_rows are asked for by the first pass over the keys only.
template <class Key>
GEMMAX_AVX2 void scores_of(const float* q, int64_t n_heads, int64_t hd, const Key* const* keys,
                           int64_t n_keys, float scale, float* scores, int64_t score_stride,
                           bool stream, const Key* const* next_rows) {
  int64_t h = 0;
  for (; h + 4 <= n_heads; h += 4, next_rows = nullptr)
    score_heads<4, 2>(q + h * hd, hd, keys, n_keys, scale, scores + h * score_stride, score_stride,
                      stream, next_rows);
  const float* qh = q + h * hd;
  float* sh = scores + h * score_stride;
  switch (n_heads - h) {
    case 3:
      return score_heads<3, 2>(qh, hd, keys, n_keys, scale, sh, score_stride, stream, next_rows);
    case 2:
      return score_heads<2, 4>(qh, hd, keys, n_keys, scale, sh, score_stride, stream, next_rows);
    case 1:
      return score_heads<1, 8>(qh, hd, keys, n_keys, scale, sh, score_stride, stream, next_rows);
    default:
      return;
  }
}

// out_h += sum_j w_h[j] * rows[j] for H heads, R whole rows at a time: the H x R weights sit in
// registers, each 8-float piece of the R rows is loaded (and converted) once for all H heads, and
// the H outputs are read and written per piece (they stay in L1). Per element the FMAs run in row
// order, as n_rows axpy calls would. The rows are read in address order, R at a time, with
// prefetches for the rows kAhead on spread one line per piece: a decode step streams its values
// from memory, and the earlier order (32-float slices of 16-row blocks, all heads' slices in
// registers) crossed rows at every slice and left the loop waiting on memory (kernels_bench
// attention/f16_*/memory 10-12% faster in row order, the same from cache).
template <int H, int R, class Row>
GEMMAX_AVX2 void value_rows(const float* w, int64_t w_stride, const Row* const* rows,
                            int64_t n_rows, int64_t n, float* out, int64_t out_stride,
                            bool stream) {
  constexpr int64_t kAhead = 4;                                         // rows
  constexpr int64_t kPerLine = 64 / static_cast<int64_t>(sizeof(Row));  // elements per cache line
  const int64_t n8 = n / 8 * 8;
  if (stream)
    for (int64_t j = 0; j < std::min(n_rows, kAhead); ++j)
      for (int64_t d = 0; d < n; d += kPerLine)
        _mm_prefetch(reinterpret_cast<const char*>(rows[j] + d), _MM_HINT_T0);
  for (int64_t j = 0; j < n_rows; j += R) {
    const int r_n = static_cast<int>(std::min<int64_t>(R, n_rows - j));
    if (r_n < R) {  // the last rows, one at a time
      for (int r = 0; r < r_n; ++r)
        value_rows<H, 1>(w + j + r, w_stride, rows + j + r, 1, n, out, out_stride, false);
      return;
    }
    const int64_t ahead =
        stream ? std::min<int64_t>(R, n_rows - j - kAhead) : 0;  // rows to prefetch
    __m256 a[H][R];
    for (int h = 0; h < H; ++h)
      for (int r = 0; r < R; ++r) a[h][r] = _mm256_set1_ps(w[h * w_stride + j + r]);
    const Row* row[R];  // in locals, as in the AVX-512 loop: not reloaded after each store to out
    for (int r = 0; r < R; ++r) row[r] = rows[j + r];
    for (int64_t d = 0; d < n8; d += 8) {
      if (d % kPerLine == 0)
        for (int64_t r = 0; r < ahead; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(rows[j + kAhead + r] + d), _MM_HINT_T0);
      __m256 v[R];
      for (int r = 0; r < R; ++r) v[r] = load8(row[r] + d);
      for (int h = 0; h < H; ++h) {
        __m256 acc = _mm256_loadu_ps(out + h * out_stride + d);
        for (int r = 0; r < R; ++r) acc = _mm256_fmadd_ps(a[h][r], v[r], acc);
        _mm256_storeu_ps(out + h * out_stride + d, acc);
      }
    }
    for (int64_t d = n8; d < n; ++d)
      for (int h = 0; h < H; ++h)
        for (int r = 0; r < R; ++r)
          out[h * out_stride + d] =
              std::fma(w[h * w_stride + j + r], load1(row[r][d]), out[h * out_stride + d]);
  }
}

// Four heads per pass where the group has them (270M, 1B: 4 query heads per kv head), so each
// value row is read and converted once for all of them; pairs (4B) then single heads for the rest.
// R is as many rows as leave registers for the H x R weights, R values and one output.
template <class Row>
GEMMAX_AVX2 void values_of(const float* w, int64_t w_stride, int64_t n_heads,
                           const Row* const* rows, int64_t n_rows, int64_t n, float* out,
                           int64_t out_stride, bool stream) {
  int64_t h = 0;
  for (; h + 4 <= n_heads; h += 4)
    value_rows<4, 3>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                     stream);
  for (; h + 2 <= n_heads; h += 2)
    value_rows<2, 5>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                     stream);
  if (h < n_heads)
    value_rows<1, 7>(w + h * w_stride, w_stride, rows, n_rows, n, out + h * out_stride, out_stride,
                     stream);
}

}  // namespace

GEMMAX_AVX2 void attention_scores_avx2(const float* q, int64_t n_heads, int64_t head_dim,
                                       const float* const* keys, int64_t n_keys, float scale,
                                       float* scores, int64_t score_stride, bool stream,
                                       const float* const* next_rows) {
  scores_of(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride, stream, next_rows);
}

GEMMAX_AVX2 void attention_scores_avx2(const float* q, int64_t n_heads, int64_t head_dim,
                                       const uint16_t* const* keys, int64_t n_keys, float scale,
                                       float* scores, int64_t score_stride, bool stream,
                                       const uint16_t* const* next_rows) {
  scores_of(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride, stream, next_rows);
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
