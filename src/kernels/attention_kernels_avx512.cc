// AVX-512 attention inner loops, chosen over the AVX2 ones (attention_kernels_avx2.cc) where the
// CPU has AVX-512F.
//
// Scores: tiles of 4 heads x 4 keys (2 x 8, 1 x 8), one 16-lane accumulator per (head, key) pair,
// all reduced at once by a 16 x 16 transposing sum whose order is the same for every lane, so a
// pair's score is the same bits in every tile shape and call (the batch invariance the model
// rests on), though not the AVX2 loop's bits (8-lane sums). Half the FMAs of the AVX2 loop: one
// cached 270M layer (kernels_bench attention/f16_270m/cached) 0.030 -> 0.024 ms, scores alone
// 0.018 -> 0.014; 270M Q4_0 at 4096 + 64 tokens, 3 interleaved pairs: prefill 860-887 -> 926-932
// tok/s, decode 163-166 -> 171-177; 1B Q4_0 at 2048 + 64, 2 pairs: prefill +2%, decode +1-5%; at
// 512 + 128 within noise (attention is a small share there, and a decode step waits on memory).
//
// Values: out_h += sum_j w_h[j] * rows[j] as in the AVX2 loop, 16 floats per operation and twice
// the rows per pass (the 32 registers hold 4 heads x 6 rows of weights). Per output element the
// FMAs run in the same row order as there, so the results are the same bits (an FMA rounds once
// whatever the width).
//
// Only call these on CPUs with AVX-512F (and AVX2+FMA+F16C).
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
  // The row pointers in locals: read through `rows` they were reloaded after every store to out,
  // which the compiler cannot tell apart from the pointer array.
  const Row* row[R];
  for (int r = 0; r < R; ++r) row[r] = rows[j + r];
  for (int64_t d = 0; d < n16; d += 16) {
    if (d % kPerLine == 0)
      for (int64_t r = 0; r < ahead; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[j + kAhead + r] + d), _MM_HINT_T0);
    __m512 v[R];
    for (int r = 0; r < R; ++r) v[r] = load16(row[r] + d);
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
        acc = _mm256_fmadd_ps(_mm512_castps512_ps256(a[h][r]), load8(row[r] + d), acc);
      _mm256_storeu_ps(out + h * out_stride + d, acc);
    }
  for (int64_t d = n8; d < n; ++d)
    for (int h = 0; h < H; ++h)
      for (int r = 0; r < R; ++r)
        out[h * out_stride + d] =
            std::fma(w[h * w_stride + j + r], load1(row[r][d]), out[h * out_stride + d]);
}

// The 16 lanes of each of 16 accumulators summed, lane i of the result from a[i], every sum in
// the same order: ((l0 + l2) + (l1 + l3)) within each 128-bit quarter (unpack lo/hi, then the
// pairs), then quarters (q0 + q1) + (q2 + q3). A tile with fewer accumulators pads with zeros, so
// a (head, key) score is the same bits in every tile shape.
GEMMAX_AVX512_ATTN inline __m512 reduce16x16(const __m512* a) {
  __m512 b[8], c[4];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
    c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // c[i]'s quarter k holds accumulators 4i .. 4i + 3's partial sums over quarter k: sum the
  // quarters, pairs first.
  const __m512 d0 =
      _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
  const __m512 d1 =
      _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x88), _mm512_shuffle_f32x4(c[2], c[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(d0, d1, 0x88), _mm512_shuffle_f32x4(d0, d1, 0xDD));
}

// Scores of H heads x K keys (H * K <= 16): per pair one 16-lane accumulator over the 16-element
// groups of the head dimension, reduce16x16, the tail elements by fma in order, times scale.
template <int H, int K, class Key>
GEMMAX_AVX512_ATTN inline void score_tile(const float* q, int64_t hd, const Key* const* keys,
                                          float scale, float* scores, int64_t score_stride) {
  static_assert(H * K <= 16);
  __m512 acc[16];  // H * K of them used, the rest stay zero for reduce16x16
  // Unrolled, so the zeros go to registers: the loop compiled to a 1 KiB rep stos per tile.
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  int64_t d = 0;
  for (; d + 16 <= hd; d += 16) {
    __m512 kv[K];
    for (int k = 0; k < K; ++k) kv[k] = load16(keys[k] + d);
    for (int h = 0; h < H; ++h) {
      __m512 qv = _mm512_loadu_ps(q + h * hd + d);
      if constexpr (K > 1) asm("" : "+v"(qv));  // loaded once for the K keys, not once per fma
      for (int k = 0; k < K; ++k) acc[h * K + k] = _mm512_fmadd_ps(qv, kv[k], acc[h * K + k]);
    }
  }
  alignas(64) float r[16];
  _mm512_store_ps(r, reduce16x16(acc));
  for (int h = 0; h < H; ++h)
    for (int k = 0; k < K; ++k) {
      float s = r[h * K + k];
      for (int64_t e = d; e < hd; ++e) s = std::fma(q[h * hd + e], load1(keys[k][e]), s);
      scores[h * score_stride + k] = s * scale;
    }
}

// As the AVX2 loop: when streaming, key rows kAhead ahead into L1, kL2Ahead ahead into L2, and the
// value rows (next_rows) into L2 in step with the keys. The L1 misses a core keeps in flight cap
// what 4 rows of lead can stream (~8-9 GB/s per thread in the 4B decode), and with K linear in
// memory (paged_kv_cache.h) an L2 lead of 16 rows took decode attention per token (`gemmax bench
// --prompt-tokens 512 --profile`, interleaved pairs) from 0.58-0.90 to 0.50-0.69 ms (270M Q4_0,
// 5 of 5 pairs lower; 5 of 6 in an earlier set), 1B Q4_0 1.11-1.18 -> 0.87-0.96, 4B Q4_0
// 4.66-5.02 -> 3.59-4.24. Leads of 8, 24, 32 or 64 rows were no better than 16. Tiles of fewer
// than 4 heads (4B and larger: 2 query heads per kv head) skip the L1 lead: with half the
// arithmetic per key row, its 8 prefetches per row cost more than they save (4B Q4_0, 5 of 5
// interleaved pairs lower, 3.70-4.10 -> 3.27-3.81 ms); for the 270M's 4-head tiles dropping it
// measured no better. Prefetches change no result.
template <int H, int K, class Key>
GEMMAX_AVX512_ATTN void score_heads(const float* q, int64_t hd, const Key* const* keys,
                                    int64_t n_keys, float scale, float* scores,
                                    int64_t score_stride, bool stream,
                                    const Key* const* next_rows) {
  constexpr int64_t kAhead = 4;     // key rows into L1 (4-head tiles only)
  constexpr int64_t kL2Ahead = 16;  // key rows into L2
  if (!stream) next_rows = nullptr;
  if (stream) prefetch_rows<_MM_HINT_T0>(keys, hd, 0, std::min(n_keys, kAhead));
  int64_t j = 0;
  for (; j + K <= n_keys; j += K) {
    if (H >= 4 && stream)
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

// Four heads x 4 keys per tile where the group has them (270M, 1B), pairs x 8 keys (4B, 12B,
// 27B), then single heads x 8 keys; next_rows are asked for by the first pass only.
template <class Key>
GEMMAX_AVX512_ATTN void scores_of(const float* q, int64_t n_heads, int64_t hd,
                                  const Key* const* keys, int64_t n_keys, float scale,
                                  float* scores, int64_t score_stride, bool stream,
                                  const Key* const* next_rows) {
  int64_t h = 0;
  for (; h + 4 <= n_heads; h += 4, next_rows = nullptr)
    score_heads<4, 4>(q + h * hd, hd, keys, n_keys, scale, scores + h * score_stride, score_stride,
                      stream, next_rows);
  for (; h + 2 <= n_heads; h += 2, next_rows = nullptr)
    score_heads<2, 8>(q + h * hd, hd, keys, n_keys, scale, scores + h * score_stride, score_stride,
                      stream, next_rows);
  if (h < n_heads)
    score_heads<1, 8>(q + h * hd, hd, keys, n_keys, scale, scores + h * score_stride, score_stride,
                      stream, next_rows);
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

void attention_scores_avx512(const float* q, int64_t n_heads, int64_t head_dim,
                             const float* const* keys, int64_t n_keys, float scale, float* scores,
                             int64_t score_stride, bool stream, const float* const* next_rows) {
  scores_of(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride, stream, next_rows);
}

void attention_scores_avx512(const float* q, int64_t n_heads, int64_t head_dim,
                             const uint16_t* const* keys, int64_t n_keys, float scale,
                             float* scores, int64_t score_stride, bool stream,
                             const uint16_t* const* next_rows) {
  scores_of(q, n_heads, head_dim, keys, n_keys, scale, scores, score_stride, stream, next_rows);
}

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
