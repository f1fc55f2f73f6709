// BF16 weights by `vdpbf16ps` (AVX512-BF16 CPUs): activations rounded to bf16 once per call, and
// every product of a bf16 weight pair with a bf16 activation pair summed in f32 by one instruction.
// Against the f32 kernels (bf16 weights widened, f32 activations, FMAs) this halves the
// instructions per multiply-add: on the AMD Zen 4 host `peak_rate_bench` measured `vdpbf16ps` at
// 228 GMAC/s on 2 threads against 116 for AVX-512 FMAs, and the f32 panel prefill already ran at
// ~85% of the FMA peak there (4B BF16 ~30 tok/s against llama.cpp's ~48, which also rounds its
// activations to bf16). The price is the activations' rounding: a relative error of at most 2^-9
// per element (tests/kernels/matmul_check.h bounds it).
//
// One chain scheme, kept by every kernel so that a token's result never depends on its batch:
// a row's chain is one 16-lane accumulator over the row's 32-element steps, lane l summing the
// pair (32i + 2l, 32i + 2l + 1) of every step i (vdpbf16ps: odd product, then even, each rounded
// in f32), from zero; the row's result is the fixed horizontal sum `hsum16` of the 16 lanes.
// - GEMV (`rows`): four rows from four distant streams in one loop (their chains overlap).
// - Prefill (`panel_rows_dot32`, any number of tokens above one): the BLIS scheme of
//   matmul_panels_avx2.cc with the pair words as elements: lane l is class l, each class runs as
//   its own chain over packed weights (32 rows per block) and packed activations (8 tokens per
//   tile), and the 16 class sums are added in hsum16's order. The microkernel runs classes c and
//   c + 8 side by side (four tokens) and adds them, hsum16's first level, before they leave the
//   registers: reduce_classes then loads 8 vectors per 16 results, not 16, and adds 7 (session
//   21: 1B 512-token prefill 228-242 -> 242-253 tok/s, 4B 59-61 -> 61-62, interleaved; the bits
//   are the same).
// - Fewer classes than 16 (two or four rows per vector, one 256- or 128-bit part per row) leave
//   less to add but cost the GEMV its one 64-byte load per vdpbf16ps: session 21 measured such
//   schemes at 3-15% faster prefills and 3-40% slower decodes (docs/cpu_kernels.md).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/avx512_gcc12_warnings.h"
#include "kernels/matmul_internal.h"
#include "kernels/word_transpose_avx512.h"

#define GEMMAX_BF16DOT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

constexpr int kClasses = 16;          // pair words per 32-element step: one chain lane each
constexpr int kRows = 32;             // rows per packed block (two 16-lane vectors)
constexpr int kTokens = 8;            // tokens per packed activation tile (two microkernel calls)
constexpr int kPairs = kClasses / 2;  // class c runs in the microkernel with class c + kPairs
constexpr int kMicroTokens = kTokens / 2;  // tokens per microkernel call (16 accumulators)
// Token tiles that reuse one pair of classes of packed weights from L1. 1 or 2 (class sums
// reduced while still in L1) measured within the noise of 8 on 270M and 1B prefills (session 20),
// and 4 the same as 8 after the class pairs (session 21).
constexpr int kBlockTiles = 8;
constexpr int kStreams = 4;  // GEMV rows in flight, from distant parts of the range

GEMMAX_BF16DOT inline __m512 dot_step(__m512 acc, __m512i w, __m512i a) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(w), reinterpret_cast<__m512bh&>(a));
}

// Lanes (l, l + 8), then (l, l + 4), (l, l + 2), (0, 1): reduce_classes adds the classes the same
// way.
GEMMAX_BF16DOT inline float hsum16(__m512 v) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v),
                                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

GEMMAX_BF16DOT inline __m512i load_words(const uint8_t* p) {
  return _mm512_loadu_si512(reinterpret_cast<const void*>(p));
}

// 32 activations rounded to bf16 (to nearest even) as 16 pair words: the one rounding that the
// GEMV's activation rows (bf16_act_row) and the panels' tiles (pack_dot32_tile) share.
GEMMAX_BF16DOT inline __m512i pair_words(const float* x) {
  const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
  return reinterpret_cast<const __m512i&>(h);
}

// The chain of one row (k / 32 steps) against one bf16 activation row.
GEMMAX_BF16DOT float row_dot(const uint8_t* w, const void* act, int64_t k) {
  const auto* a = static_cast<const uint8_t*>(act);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t off = 0; off < 2 * k; off += 64) {
    prefetch_ahead(w + off);
    acc = dot_step(acc, load_words(w + off), load_words(a + off));
  }
  return hsum16(acc);
}

// Rows r, r + part, r + 2 part, r + 3 part (w is row r, `stride` bytes between the streams): four
// chains side by side, each the same as row_dot's.
GEMMAX_BF16DOT void stream_dots(const uint8_t* w, size_t stride, const uint8_t* a, int64_t k,
                                float* out) {
  __m512 acc[kStreams];
  for (int s = 0; s < kStreams; ++s) acc[s] = _mm512_setzero_ps();
  for (int64_t off = 0; off < 2 * k; off += 64) {
    const __m512i x = load_words(a + off);
#pragma GCC unroll 4
    for (int s = 0; s < kStreams; ++s) {
      prefetch_ahead(w + s * stride + off);
      acc[s] = dot_step(acc[s], load_words(w + s * stride + off), x);
    }
  }
  for (int s = 0; s < kStreams; ++s) out[s] = hsum16(acc[s]);
}

// GEMV over a row range in matmul_avx2.cc's visiting order (kRowStreams equal parts in turn). The
// same loop as its rows_from_stream_tile, kept here so that stream_dots inlines: that template over
// exported tiles (a call per 4 rows across files) measured ~5% slower on a cache-resident matrix
// (kernels_bench gemv/BF16/ffn_up_640x2048, 2 threads: 119-132 against 121-139 GB/s, 4 pairs).
GEMMAX_BF16DOT void gemv_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* act,
                              int64_t k, float* y) {
  const auto* a = static_cast<const uint8_t*>(act);
  const int64_t part = n_rows / kStreams;
  const size_t stride = static_cast<size_t>(part) * row_bytes;
  prefetch_stream_heads(w, stride, kStreams);
  for (int64_t r = 0; r < part; ++r) {
    float out[kStreams];
    stream_dots(w + r * row_bytes, stride, a, k, out);
    for (int s = 0; s < kStreams; ++s) y[r + s * part] = out[s];
  }
  for (int64_t r = kStreams * part; r < n_rows; ++r) y[r] = row_dot(w + r * row_bytes, a, k);
}

// wp[(c * n_i + i) * kRows + r] = pair word 16i + c of row r (zero past n_r): per step, a 16 x 16
// word transpose per 16 rows, each row's next lines asked for 1 KiB ahead (4 KiB measured the
// same: 1B 512-token prefill 223-235 vs 230-239 tok/s, interleaved).
GEMMAX_BF16DOT void pack_weights(const uint8_t* w, size_t row_bytes, int n_r, int64_t n_i,
                                 uint32_t* wp) {
  for (int h = 0; h < kRows / 16; ++h) {
    const int rows_here = std::clamp(n_r - 16 * h, 0, 16);
    const uint8_t* base = w + 16 * h * row_bytes;
    for (int64_t i = 0; i < n_i; ++i) {
      const size_t off = 64 * static_cast<size_t>(i);
      for (int r = 0; r < rows_here; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(base + r * row_bytes + off + 1024), _MM_HINT_T0);
      __m512i m[16];
      detail::load_words(base, row_bytes, rows_here, off, 0xffff, m);
      for (int c = 0; c < kClasses; ++c)
        _mm512_storeu_si512(wp + (c * n_i + i) * kRows + 16 * h, m[c]);
    }
  }
}

// p[t * kRows + r] for t < kMicroTokens: the chains of classes c and c + kPairs of (token t, row r)
// over n steps from zero, added (reduce_classes' first level). wa, wb: the classes' packed weights;
// xa, xb: their words of the microkernel's tokens in a packed tile (kTokens words per step). 16
// accumulators, four weight loads and eight broadcasts per 16 vdpbf16ps.
GEMMAX_BF16DOT void micro(const uint32_t* wa, const uint32_t* wb, const uint32_t* xa,
                          const uint32_t* xb, int64_t n, float* p) {
  constexpr int kT = kMicroTokens;
  __m512 a0[kT], a1[kT], b0[kT], b1[kT];
#pragma GCC unroll 4
  for (int t = 0; t < kT; ++t) a0[t] = a1[t] = b0[t] = b1[t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; ++i, wa += kRows, wb += kRows, xa += kTokens, xb += kTokens) {
    const __m512i wa0 = _mm512_loadu_si512(wa), wa1 = _mm512_loadu_si512(wa + 16);
    const __m512i wb0 = _mm512_loadu_si512(wb), wb1 = _mm512_loadu_si512(wb + 16);
#pragma GCC unroll 4
    for (int t = 0; t < kT; ++t) {
      const __m512i x = _mm512_set1_epi32(static_cast<int>(xa[t]));
      a0[t] = dot_step(a0[t], wa0, x);
      a1[t] = dot_step(a1[t], wa1, x);
      const __m512i y = _mm512_set1_epi32(static_cast<int>(xb[t]));
      b0[t] = dot_step(b0[t], wb0, y);
      b1[t] = dot_step(b1[t], wb1, y);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < kT; ++t) {
    _mm512_storeu_ps(p + t * kRows, _mm512_add_ps(a0[t], b0[t]));
    _mm512_storeu_ps(p + t * kRows + 16, _mm512_add_ps(a1[t], b1[t]));
  }
}

// part[c * kTokens * kRows + t * kRows + r]: classes c and c + kPairs added (c < kPairs);
// y[t * ldy + r] = the rest of hsum16's order, for t < n_t and r < n_r.
GEMMAX_BF16DOT void reduce_classes(const float* part, int n_t, int n_r, float* y, size_t ldy) {
  constexpr int kClassFloats = kTokens * kRows;
  for (int t = 0; t < n_t; ++t) {
    for (int h = 0; h < 2; ++h) {
      const float* p = part + t * kRows + 16 * h;
      __m512 v[kPairs];
      for (int c = 0; c < kPairs; ++c) v[c] = _mm512_loadu_ps(p + c * kClassFloats);
      for (int c = 0; c < 4; ++c) v[c] = _mm512_add_ps(v[c], v[c + 4]);
      for (int c = 0; c < 2; ++c) v[c] = _mm512_add_ps(v[c], v[c + 2]);
      const __m512 sum = _mm512_add_ps(v[0], v[1]);
      const int valid = std::clamp(n_r - 16 * h, 0, 16);
      _mm512_mask_storeu_ps(y + t * ldy + 16 * h, static_cast<__mmask16>((1u << valid) - 1u), sum);
    }
  }
}

}  // namespace

GEMMAX_BF16DOT void bf16_act_row(const float* x, int64_t k, void* out) {
  auto* o = static_cast<uint8_t*>(out);
  for (int64_t i = 0; i < k; i += 32) _mm512_storeu_si512(o + 2 * i, pair_words(x + i));
}

RowDotFn bf16_dot_row() { return row_dot; }
RowsFn bf16_dot_rows() { return gemv_rows; }

// Per step i, the 16 pair words of each of the tile's tokens (rounded as bf16_act_row rounds),
// stored class-major: out[(c * n_i + i) * kTokens + t]; tokens past n_valid are zero.
GEMMAX_BF16DOT void pack_dot32_tile(const float* x, int64_t k, int n_valid, uint32_t* out) {
  const int64_t n_i = k / 32;
  for (int64_t i = 0; i < n_i; ++i) {
    __m512i m[16];
    for (int t = 0; t < 16; ++t) {
      if (t < n_valid) {
        m[t] = pair_words(x + t * k + 32 * i);
      } else {
        m[t] = _mm512_setzero_si512();
      }
    }
    transpose16(m);  // m[c] lane t: word c of token t
    for (int c = 0; c < kClasses; ++c)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (c * n_i + i) * kTokens),
                          _mm512_castsi512_si256(m[c]));
  }
}

GEMMAX_BF16DOT void panel_rows_dot32(const uint8_t* w, size_t row_bytes, int64_t n_rows,
                                     const uint32_t* xp, size_t tile_words, int64_t n_tokens,
                                     int64_t k, float* y, size_t ldy) {
  constexpr int kClassFloats = kTokens * kRows;
  const int64_t n_i = k / 32;
  thread_local std::vector<uint32_t> wp_buf;
  thread_local std::vector<float> part_buf;
  uint32_t* wp = scratch(wp_buf, static_cast<size_t>(kRows * k / 2));
  float* part = scratch(part_buf, static_cast<size_t>(kBlockTiles * kPairs * kClassFloats));
  const int64_t n_tiles = (n_tokens + kTokens - 1) / kTokens;
  for (int64_t rb = 0; rb < n_rows; rb += kRows) {
    const int n_r = static_cast<int>(std::min<int64_t>(kRows, n_rows - rb));
    pack_weights(w + rb * row_bytes, row_bytes, n_r, n_i, wp);
    for (int64_t tile0 = 0; tile0 < n_tiles; tile0 += kBlockTiles) {
      const int nt = static_cast<int>(std::min<int64_t>(kBlockTiles, n_tiles - tile0));
      for (int c = 0; c < kPairs; ++c)
        for (int j = 0; j < nt; ++j) {
          const uint32_t* x = xp + (tile0 + j) * tile_words;
          float* p = part + (j * kPairs + c) * kClassFloats;
          for (int t = 0; t < kTokens; t += kMicroTokens)
            micro(wp + c * n_i * kRows, wp + (c + kPairs) * n_i * kRows, x + c * n_i * kTokens + t,
                  x + (c + kPairs) * n_i * kTokens + t, n_i, p + t * kRows);
        }
      for (int j = 0; j < nt; ++j) {
        const int64_t t0 = (tile0 + j) * kTokens;
        const int n_t = static_cast<int>(std::min<int64_t>(kTokens, n_tokens - t0));
        reduce_classes(part + j * kPairs * kClassFloats, n_t, n_r, y + t0 * ldy + rb, ldy);
      }
    }
  }
}

}  // namespace gemmax::detail
