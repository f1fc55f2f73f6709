// Prefill of BF16 and F16 weights by packed panels (the BLIS scheme: pack both operands into the
// order the microkernel reads, so that every load feeds several FMAs), computing the very same FMA
// chains as the row kernels of matmul_avx2.cc, so a token's result still does not depend on its
// batch.
//
// A row kernel keeps one 8-lane accumulator per chain, and lane l of a chain only ever sees the
// elements of one residue class of the row (tile_half, one chain: element 8g + l; the pair kernels:
// element 16i + 2l in the even chain, 16i + 2l + 1 in the odd one). Each lane is therefore a
// sequence of FMAs over its class, from zero, that the row kernel ends with a fixed sum of the
// lanes. The panel GEMM runs each class as its own sequence, one class after another: a register
// holds that class's accumulators for 8 rows, the weights of 16 rows come packed as f32 in class
// order (two loads per step), the activations of 6 tokens packed the same way (six broadcasts per
// step) - 12 FMAs per 8 loads, with no widening in the loop. The class sums are stored and then
// added in the row kernel's order (hsum of even + odd), one span after another. Against the row
// tiles of 2 rows x 3 tokens this takes the bf16 -> f32 conversion out of the inner loop and loads
// each weight once per 6 tokens instead of 3.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/matmul_internal.h"
#include "tensor/half.h"

#define GEMMAX_AVX2 __attribute__((target("avx2,fma,f16c")))
#define GEMMAX_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

constexpr int kBlockTiles = 8;  // token tiles that reuse one class of packed weights from L1

// The classes of a scheme and the elements its chains restart after (a span).
struct Layout {
  int classes;
  int64_t span;
};

Layout layout_of(PanelScheme s, int64_t k) {
  if (s == PanelScheme::kPairs16) return Layout{16, kPairSpan};
  return Layout{s == PanelScheme::kGroups16 ? 16 : 8, std::max<int64_t>(k, 1)};
}

// acc[t][h] (token t, rows 8h..8h+7) = the FMA chain over n steps of w (16 rows per step) and x
// (T tokens per step), from zero; stored to p[t * 16 + r]. 2T accumulators, 2 + T loads per 2T
// FMAs.
template <int T>
GEMMAX_AVX2 void micro_avx2(const float* w, const float* x, int64_t n, float* p) {
  __m256 a[T], b[T];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) a[t] = b[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; ++i, w += 16, x += T) {
    const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const __m256 xb = _mm256_broadcast_ss(x + t);
      a[t] = _mm256_fmadd_ps(w0, xb, a[t]);
      b[t] = _mm256_fmadd_ps(w1, xb, b[t]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(p + t * 16, a[t]);
    _mm256_storeu_ps(p + t * 16 + 8, b[t]);
  }
}

// The same for 32 rows in two 16-lane AVX-512 vectors: each lane runs the same FMAs (one rounding
// each) as in micro_avx2, at twice the FMAs per instruction.
template <int T>
GEMMAX_AVX512 void micro_avx512(const float* w, const float* x, int64_t n, float* p) {
  __m512 a[T], b[T];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) a[t] = b[t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; ++i, w += 32, x += T) {
    const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const __m512 xb = _mm512_set1_ps(x[t]);
      a[t] = _mm512_fmadd_ps(w0, xb, a[t]);
      b[t] = _mm512_fmadd_ps(w1, xb, b[t]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    _mm512_storeu_ps(p + t * 32, a[t]);
    _mm512_storeu_ps(p + t * 32 + 16, b[t]);
  }
}

// The microkernels' shapes: R rows x T tokens. AVX2 has 16 registers: 12 accumulators, two
// weight vectors and a broadcast. AVX-512 has 32, and 8 tokens (16 accumulators: 10 loads per 16
// FMAs) ran an L1-resident chain at ~87 GMAC/s on one thread here against ~75 for 6 tokens (8
// loads per 12 FMAs; the FMA peak is ~104).
constexpr int kNarrowRows = 16, kNarrowTokens = 6, kWideRows = 32, kWideTokens = 8;

template <int R, int T>
GEMMAX_AVX2 void micro(const float* w, const float* x, int64_t n, float* p) {
  if constexpr (R == kWideRows) {
    micro_avx512<T>(w, x, n, p);
  } else {
    micro_avx2<T>(w, x, n, p);
  }
}

// Eight 16-bit weights as f32: BF16 by a shift, F16 by vcvtph2ps (exact either way).
template <bool kF16>
GEMMAX_AVX2 inline __m256 load8_half(const uint8_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (kF16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// In place: v[c] lane r = v[r] lane c before.
GEMMAX_AVX2 inline void transpose8x8(__m256 (&v)[8]) {
  __m256 t[8], u[8];
  for (int j = 0; j < 4; ++j) {
    t[2 * j] = _mm256_unpacklo_ps(v[2 * j], v[2 * j + 1]);
    t[2 * j + 1] = _mm256_unpackhi_ps(v[2 * j], v[2 * j + 1]);
  }
  for (int j = 0; j < 2; ++j) {
    u[4 * j] = _mm256_shuffle_ps(t[4 * j], t[4 * j + 2], 0x44);
    u[4 * j + 1] = _mm256_shuffle_ps(t[4 * j], t[4 * j + 2], 0xee);
    u[4 * j + 2] = _mm256_shuffle_ps(t[4 * j + 1], t[4 * j + 3], 0x44);
    u[4 * j + 3] = _mm256_shuffle_ps(t[4 * j + 1], t[4 * j + 3], 0xee);
  }
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
    v[j + 4] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
  }
}

// wp[(c * n_i + i) * R + r] = element base + C * i + c of row r (zero for rows past n_r), as f32:
// per step i and 8 classes, an 8 x 8 transpose for every 8 rows' converted weights.
template <bool kF16, int R>
GEMMAX_AVX2 void pack_weights(const uint8_t* w, size_t row_bytes, int n_r, int64_t base,
                              int64_t len, int classes, float* wp) {
  const int64_t n_i = len / classes;
  for (int h = 0; h < R / 8; ++h) {
    const uint8_t* rows[8];
    for (int r = 0; r < 8; ++r) rows[r] = 8 * h + r < n_r ? w + (8 * h + r) * row_bytes : nullptr;
    for (int64_t i = 0; i < n_i; ++i) {
      const size_t off = 2 * static_cast<size_t>(base + classes * i);
      // The weights come from memory (a prefill reads each once); eight streams at a time, each
      // asked for 1 KiB ahead, instead of 32 rows at once left to the hardware prefetcher (the
      // pack was ~15% of a 1B prefill, 4% when the same matrix sat in the L3 cache).
      if (off % 64 == 0)
        for (int r = 0; r < 8; ++r)
          if (rows[r] != nullptr)
            _mm_prefetch(reinterpret_cast<const char*>(rows[r] + off + 1024), _MM_HINT_T0);
      for (int q = 0; q < classes; q += 8) {
        __m256 v[8];
        for (int r = 0; r < 8; ++r)
          v[r] = rows[r] != nullptr ? load8_half<kF16>(rows[r] + off + 2 * q) : _mm256_setzero_ps();
        transpose8x8(v);
        for (int c = 0; c < 8; ++c) _mm256_storeu_ps(wp + ((q + c) * n_i + i) * R + 8 * h, v[c]);
      }
    }
  }
}

// The row kernel's final sum of one span: lane l of the chain is class l (one chain) or classes
// 2l + 2l + 1 (even + odd chains), and hsum adds lanes (l, l + 4), then (0, 2) and (1, 3), then the
// two; here for 8 rows at once. part[c * TR + t * R + r] holds class c's chain of (token t, row
// r); y[t * ldy + r] = the span's sum (first span) or y + the sum, for t < n_t and r < n_r.
template <PanelScheme S, int R, int T>
GEMMAX_AVX2 void reduce_span(const float* part, int n_t, int n_r, bool first, float* y,
                             size_t ldy) {
  constexpr int kClassFloats = T * R;
  for (int t = 0; t < n_t; ++t) {
    alignas(32) float s[R];
    for (int h = 0; h < R / 8; ++h) {
      const float* p = part + t * R + 8 * h;
      __m256 v[8];
      for (int l = 0; l < 8; ++l) {
        if constexpr (S == PanelScheme::kPairs16) {
          v[l] = _mm256_add_ps(_mm256_loadu_ps(p + 2 * l * kClassFloats),
                               _mm256_loadu_ps(p + (2 * l + 1) * kClassFloats));
        } else if constexpr (S == PanelScheme::kGroups16) {
          v[l] = _mm256_add_ps(_mm256_loadu_ps(p + l * kClassFloats),
                               _mm256_loadu_ps(p + (l + 8) * kClassFloats));
        } else {
          v[l] = _mm256_loadu_ps(p + l * kClassFloats);
        }
      }
      const __m256 s4_0 = _mm256_add_ps(v[0], v[4]), s4_1 = _mm256_add_ps(v[1], v[5]);
      const __m256 s4_2 = _mm256_add_ps(v[2], v[6]), s4_3 = _mm256_add_ps(v[3], v[7]);
      const __m256 sum = _mm256_add_ps(_mm256_add_ps(s4_0, s4_2), _mm256_add_ps(s4_1, s4_3));
      _mm256_store_ps(s + 8 * h, sum);
    }
    float* o = y + t * ldy;
    if (n_r == R) {
      for (int h = 0; h < R / 8; ++h) {
        const __m256 v = _mm256_load_ps(s + 8 * h);
        _mm256_storeu_ps(o + 8 * h, first ? v : _mm256_add_ps(_mm256_loadu_ps(o + 8 * h), v));
      }
    } else {
      for (int r = 0; r < n_r; ++r) o[r] = first ? s[r] : o[r] + s[r];
    }
  }
}

// reduce_span for R = 32 in 16-lane vectors: the same additions in the same order, half the
// instructions (it was ~6% of a 1B prefill in 8-lane vectors).
template <PanelScheme S, int T>
GEMMAX_AVX512 void reduce_span_wide(const float* part, int n_t, int n_r, bool first, float* y,
                                    size_t ldy) {
  constexpr int R = 32, kClassFloats = T * R;
  for (int t = 0; t < n_t; ++t) {
    float* o = y + t * ldy;
    for (int h = 0; h < 2; ++h) {
      const float* p = part + t * R + 16 * h;
      __m512 v[8];
      for (int l = 0; l < 8; ++l) {
        if constexpr (S == PanelScheme::kPairs16) {
          v[l] = _mm512_add_ps(_mm512_loadu_ps(p + 2 * l * kClassFloats),
                               _mm512_loadu_ps(p + (2 * l + 1) * kClassFloats));
        } else if constexpr (S == PanelScheme::kGroups16) {
          v[l] = _mm512_add_ps(_mm512_loadu_ps(p + l * kClassFloats),
                               _mm512_loadu_ps(p + (l + 8) * kClassFloats));
        } else {
          v[l] = _mm512_loadu_ps(p + l * kClassFloats);
        }
      }
      const __m512 s4_0 = _mm512_add_ps(v[0], v[4]), s4_1 = _mm512_add_ps(v[1], v[5]);
      const __m512 s4_2 = _mm512_add_ps(v[2], v[6]), s4_3 = _mm512_add_ps(v[3], v[7]);
      const __m512 sum = _mm512_add_ps(_mm512_add_ps(s4_0, s4_2), _mm512_add_ps(s4_1, s4_3));
      // Rows past n_r are masked off (a partial block at the end of the range).
      const int valid = std::clamp(n_r - 16 * h, 0, 16);
      const __mmask16 m = static_cast<__mmask16>((1u << valid) - 1u);
      float* oh = o + 16 * h;
      _mm512_mask_storeu_ps(oh, m, first ? sum : _mm512_add_ps(_mm512_maskz_loadu_ps(m, oh), sum));
    }
  }
}

// Rows [0, n_rows) x every token, R rows x T tokens per microkernel call; xp in tiles of T.
template <PanelScheme S, bool kF16, int R, int T>
void panel_rows_scheme(const uint8_t* w, size_t row_bytes, int64_t n_rows, const float* xp,
                       int64_t n_tokens, int64_t k, float* y, size_t ldy) {
  const Layout lay = layout_of(S, k);
  constexpr int kClassFloats = T * R;
  thread_local std::vector<float> wp_buf, part_buf;
  float* wp = scratch(wp_buf, static_cast<size_t>(R * std::min(lay.span, k)));
  float* part = scratch(part_buf, static_cast<size_t>(kBlockTiles * lay.classes * kClassFloats));
  const int64_t n_tiles = (n_tokens + T - 1) / T;
  for (int64_t base = 0; base < k; base += lay.span) {
    const int64_t len = std::min(lay.span, k - base), n_i = len / lay.classes;
    for (int64_t rb = 0; rb < n_rows; rb += R) {
      const int n_r = static_cast<int>(std::min<int64_t>(R, n_rows - rb));
      pack_weights<kF16, R>(w + rb * row_bytes, row_bytes, n_r, base, len, lay.classes, wp);
      for (int64_t tile0 = 0; tile0 < n_tiles; tile0 += kBlockTiles) {
        const int nt = static_cast<int>(std::min<int64_t>(kBlockTiles, n_tiles - tile0));
        for (int c = 0; c < lay.classes; ++c) {
          for (int j = 0; j < nt; ++j) {
            const float* xc = xp + (tile0 + j) * T * k + T * (base + c * n_i);
            micro<R, T>(wp + c * n_i * R, xc, n_i, part + (j * lay.classes + c) * kClassFloats);
          }
        }
        for (int j = 0; j < nt; ++j) {
          const int64_t t0 = (tile0 + j) * T;
          const int n_t = static_cast<int>(std::min<int64_t>(T, n_tokens - t0));
          const float* pj = part + j * lay.classes * kClassFloats;
          if constexpr (R == kWideRows) {
            reduce_span_wide<S, T>(pj, n_t, n_r, base == 0, y + t0 * ldy + rb, ldy);
          } else {
            reduce_span<S, R, T>(pj, n_t, n_r, base == 0, y + t0 * ldy + rb, ldy);
          }
        }
      }
    }
  }
}

template <PanelScheme S, bool kF16>
void panel_rows_of(bool wide, const uint8_t* w, size_t row_bytes, int64_t n_rows, const float* xp,
                   int64_t n_tokens, int64_t k, float* y, size_t ldy) {
  if (wide)
    return panel_rows_scheme<S, kF16, kWideRows, kWideTokens>(w, row_bytes, n_rows, xp, n_tokens, k,
                                                              y, ldy);
  panel_rows_scheme<S, kF16, kNarrowRows, kNarrowTokens>(w, row_bytes, n_rows, xp, n_tokens, k, y,
                                                         ldy);
}

}  // namespace

bool panel_supported(PanelScheme s, int64_t k) {
  if (s == PanelScheme::kDot32) return k > 0 && k % 32 == 0;
  return s != PanelScheme::kNone && k > 0 && k % layout_of(s, k).classes == 0;
}

int panel_tile_tokens(bool wide) { return wide ? kWideTokens : kNarrowTokens; }
static_assert(kWideTokens == 8, "pack_dot32_tile packs tiles of 8 tokens");

size_t panel_tile_floats(PanelScheme s, int tile, int64_t k) {
  const auto floats = static_cast<size_t>(tile * k);
  return s == PanelScheme::kDot32 ? floats / 2 : floats;
}

size_t panel_act_floats(PanelScheme s, int64_t n_tokens, int64_t k, int tile) {
  return static_cast<size_t>((n_tokens + tile - 1) / tile) * panel_tile_floats(s, tile, k);
}

GEMMAX_AVX2 void pack_panel_tile(PanelScheme s, int tile, const float* x, int64_t k, int n_valid,
                                 float* out) {
  if (s == PanelScheme::kDot32)
    return pack_dot32_tile(x, k, n_valid, reinterpret_cast<uint32_t*>(out));
  const Layout lay = layout_of(s, k);
  // Per step i and 8 classes, an 8 x 8 transpose of (token, class) -> (class, token), tokens past
  // n_valid (and past the tile's 6 in a narrow one) zero; a narrow tile stores 6 of the 8 lanes.
  const __m256i first6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
  for (int64_t base = 0; base < k; base += lay.span) {
    const int64_t len = std::min(lay.span, k - base), n_i = len / lay.classes;
    float* o = out + tile * base;
    for (int64_t i = 0; i < n_i; ++i) {
      for (int q = 0; q < lay.classes; q += 8) {
        __m256 v[8];
        for (int t = 0; t < 8; ++t)
          v[t] = t < n_valid ? _mm256_loadu_ps(x + t * k + base + lay.classes * i + q)
                             : _mm256_setzero_ps();
        transpose8x8(v);
        for (int c = 0; c < 8; ++c) {
          float* dst = o + ((q + c) * n_i + i) * tile;
          if (tile == 8) {
            _mm256_storeu_ps(dst, v[c]);
          } else {
            _mm256_maskstore_ps(dst, first6, v[c]);
          }
        }
      }
    }
  }
}

void panel_rows(PanelScheme s, bool wide, bool f16, const uint8_t* w, size_t row_bytes,
                int64_t n_rows, const float* xp, int64_t n_tokens, int64_t k, float* y,
                size_t ldy) {
  using enum PanelScheme;
  if (s == kDot32) {  // tiles of 8 tokens, as prepare_panels lays them out
    return panel_rows_dot32(w, row_bytes, n_rows, reinterpret_cast<const uint32_t*>(xp),
                            panel_tile_floats(s, kWideTokens, k), n_tokens, k, y, ldy);
  }
  if (s == kPairs16)  // the BF16 pair kernels' scheme
    return panel_rows_of<kPairs16, false>(wide, w, row_bytes, n_rows, xp, n_tokens, k, y, ldy);
  if (s == kGroups16) {
    if (f16)
      return panel_rows_of<kGroups16, true>(wide, w, row_bytes, n_rows, xp, n_tokens, k, y, ldy);
    return panel_rows_of<kGroups16, false>(wide, w, row_bytes, n_rows, xp, n_tokens, k, y, ldy);
  }
  if (f16) return panel_rows_of<kChain8, true>(wide, w, row_bytes, n_rows, xp, n_tokens, k, y, ldy);
  panel_rows_of<kChain8, false>(wide, w, row_bytes, n_rows, xp, n_tokens, k, y, ldy);
}

}  // namespace gemmax::detail
