// Prefill of the 32-element block formats (Q4_0, Q5_0, Q5_0x4, Q8_0) by packed int8 panels with
// AVX-512 VNNI, giving the same bits as their AVX2/VNNI quad tiles (matmul_avx2.cc,
// quad_tiles.inc).
//
// A quad tile keeps, per weight row and token, 8 float lanes: lane l = 2m + h belongs to block m of
// each group of four blocks (a quad) and to 16 of its elements (8j + 4h + i, j, i < 4). Per quad,
// lane l adds float(its exact int32 dot minus the offset term) times (d_w(m) * d_x(m)) with one
// FMA, and the row's result is hsum of the 8 lanes. Here one int32/float lane is one of 16 rows
// instead: the 8 lane classes are computed one after another, each over every quad of the row
// (vpdpbusd on packed bytes, four per class and quad, then the same subtraction, conversion,
// product and FMA), and the 8 class sums are then added in hsum's order. Signed Q8_0 weights go in
// with 128 added (u8 for vpdpbusd) and 128 * sum(activations) subtracted: the same exact int32 as
// the tiles' sign trick.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/avx512_gcc12_warnings.h"
#include "kernels/matmul_internal.h"
#include "kernels/quant_blocks.h"
#include "kernels/word_transpose_avx512.h"

#define GEMMAX_QPANEL __attribute__((target("avx512f,avx512vnni,avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

using namespace quant;

constexpr int kRows = kKPanelRows;  // one int32 lane per row
constexpr int kTokens = 8;          // tokens per microkernel call
constexpr int kClasses = 8;         // the quad tiles' lanes

// One quad (four blocks) of 16 packed rows: q[l][j][r] = the 4 unsigned bytes that lane class l
// of row r multiplies with A8Quad::q[j][4l..4l+3]; dw[m][r] = block m's f16 scale as f32 (0 for
// blocks past the row's end).
struct alignas(64) PackedQuad {
  uint8_t q[kClasses][4][kRows][4];
  float dw[4][kRows];
};

// Packing: one quad of 16 rows at a time, through 16 x 16 word transposes (word_transpose_avx512.h)
// of masked loads that stay inside the quad. The word of lane class (m, h) and register j holds
// elements 8j + 4h .. 8j + 4h + 3 of block m: in every format (parts of) one stored word, turned
// into the unsigned bytes vpdpbusd multiplies.

// Bits 0-3 of every word to bit 4 of its bytes 0-3 (Q5_0's fifth bits): bit i is moved up by 7i by
// the product (no two of the shifted bits meet, so there are no carries), then bit 8i is kept.
GEMMAX_QPANEL inline __m512i spread4(__m512i x) {
  const __m512i spread =
      _mm512_mullo_epi32(_mm512_and_si512(x, _mm512_set1_epi32(15)), _mm512_set1_epi32(0x00204081));
  return _mm512_slli_epi32(_mm512_and_si512(spread, _mm512_set1_epi32(0x01010101)), 4);
}

// Nibble word of register j from a block's stored nibble word (the low nibbles for j < 2).
GEMMAX_QPANEL inline __m512i nibble_word(__m512i stored, int j) {
  return bytes_of(stored, 4 * (j / 2), 0x0f);
}

// Block m's f16 scales of the 16 rows (zero past n_rows), at byte `off` of each row.
inline void scalar_scales(const uint8_t* w, size_t row_bytes, int n_rows, size_t off, float* dw) {
  for (int r = 0; r < kRows; ++r)
    dw[r] = r < n_rows ? f16_to_f32(load_u16(w + r * row_bytes + off)) : 0.0f;
}

GEMMAX_QPANEL inline void zero_block(int m, PackedQuad& p) {
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j) _mm512_store_si512(p.q[2 * m + h][j], _mm512_setzero_si512());
  _mm512_store_ps(p.dw[m], _mm512_setzero_ps());
}

// Formats: the bytes of a quad, and pack(w, row_bytes, n_rows, quad offset, blocks n, p), which
// fills p for the n blocks and zeroes the rest; the offset term of a lane, from A8Quad::sums16 (16
// x the sum of the lane's activations).

// Q4_0 and Q5_0: blocks m0 and m0 + 2 (m0 = 0, 1) of a quad from one masked load of the 16 words
// at block m0's byte F::kOff: the first block's words from word 0 (F::kFirst of them), the
// second's from word F::kSecond. F::word(v, h, j) builds the packed word of (h, j) from a block's
// words v[0..].
template <class F>
GEMMAX_QPANEL void pack_block_pairs(const uint8_t* w, size_t rb, int nr, size_t quad, int n,
                                    PackedQuad& p) {
  for (int m0 = 0; m0 < 2; ++m0) {
    __m512i v[16];
    if (m0 < n) {
      const unsigned first = (1u << F::kFirst) - 1;
      const auto words = static_cast<__mmask16>(first | (m0 + 2 < n ? first << F::kSecond : 0));
      load_words(w, rb, nr, quad + m0 * F::kBlockBytes + F::kOff, words, v);
    }
    for (int m = m0; m < 4; m += 2) {
      if (m >= n) {
        zero_block(m, p);
        continue;
      }
      const __m512i* block = v + (m == m0 ? 0 : F::kSecond);
      for (int h = 0; h < 2; ++h)
        for (int j = 0; j < 4; ++j) _mm512_store_si512(p.q[2 * m + h][j], F::word(block, h, j));
      scalar_scales(w, rb, nr, quad + m * F::kBlockBytes + F::kD, p.dw[m]);
    }
  }
}

// Q4_0 (18-byte blocks: f16 d | 16 nibble bytes): the four nibble words at +2 bytes, the next
// block but one's 36 bytes (9 words) on.
struct Q4_0P {
  static constexpr int kBlockBytes = q4_0::kBytes, kQuadBytes = 4 * kBlockBytes, kD = q4_0::kD;
  static constexpr int kOff = q4_0::kQs, kFirst = 4, kSecond = 9;
  GEMMAX_QPANEL static __m512i word(const __m512i* v, int h, int j) {
    return nibble_word(v[2 * (j % 2) + h], j);
  }
  GEMMAX_QPANEL static void pack(const uint8_t* w, size_t rb, int nr, size_t quad, int n,
                                 PackedQuad& p) {
    pack_block_pairs<Q4_0P>(w, rb, nr, quad, n, p);
  }
  static int32_t offset(int32_t sums16) { return sums16 >> 1; }  // 8 x the sum
};

// Q5_0 (22-byte blocks: f16 d | 32 fifth bits | 16 nibble bytes): from +2 bytes the fifth bits'
// word and the four nibble words, the next block but one's 44 bytes (11 words) on.
struct Q5_0P {
  static constexpr int kBlockBytes = q5_0::kBytes, kQuadBytes = 4 * kBlockBytes, kD = q5_0::kD;
  static constexpr int kOff = q5_0::kQh, kFirst = 5, kSecond = 11;
  GEMMAX_QPANEL static __m512i word(const __m512i* v, int h, int j) {
    const __m512i fifth = spread4(_mm512_srli_epi32(v[0], 8 * j + 4 * h));
    return _mm512_or_si512(nibble_word(v[1 + 2 * (j % 2) + h], j), fifth);
  }
  GEMMAX_QPANEL static void pack(const uint8_t* w, size_t rb, int nr, size_t quad, int n,
                                 PackedQuad& p) {
    pack_block_pairs<Q5_0P>(w, rb, nr, quad, n, p);
  }
  static int32_t offset(int32_t sums16) { return sums16; }  // 16 x the sum
};

// Q5_0x4 (quant_blocks.h; quads are always whole): 64 nibble bytes, nibble byte i of block m at
// qs[8m + i] (i < 8) and qs[32 + 8m + i - 8]; 16 bytes of fifth bits, that of element 8j + p of
// block m at bit j + 4 * (m / 2) of qh[8 * (m % 2) + p]; the four f16 scales.
struct Q5_0x4P {
  static constexpr int kQuadBytes = q5_0x4::kBytes;
  GEMMAX_QPANEL static void pack(const uint8_t* w, size_t rb, int nr, size_t quad, int /*n*/,
                                 PackedQuad& p) {
    __m512i qs[16], tail[16];
    load_words(w, rb, nr, quad + q5_0x4::kQs, 0xffff, qs);
    load_words(w, rb, nr, quad + q5_0x4::kQh, 0x003f, tail);  // qh words 0-3, scales 4-5
    for (int m = 0; m < 4; ++m)
      for (int h = 0; h < 2; ++h)
        for (int j = 0; j < 4; ++j) {
          const __m512i fifth = bytes_of(tail[2 * (m % 2) + h], j + 4 * (m / 2), 0x01);
          _mm512_store_si512(p.q[2 * m + h][j],
                             _mm512_or_si512(nibble_word(qs[8 * (j % 2) + 2 * m + h], j),
                                             _mm512_slli_epi32(fifth, 4)));
        }
    _mm512_store_ps(p.dw[0], f16_low(tail[4]));
    _mm512_store_ps(p.dw[1], f16_high(tail[4]));
    _mm512_store_ps(p.dw[2], f16_low(tail[5]));
    _mm512_store_ps(p.dw[3], f16_high(tail[5]));
  }
  static int32_t offset(int32_t sums16) { return sums16; }
};

// Q8_0 (34-byte blocks: f16 d | 32 int8), + 128: the sign bits flipped.
struct Q8_0P {
  static constexpr int kQuadBytes = 4 * q8_0::kBytes;
  GEMMAX_QPANEL static void pack(const uint8_t* w, size_t rb, int nr, size_t quad, int n,
                                 PackedQuad& p) {
    const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80808080u));
    for (int m = 0; m < 4; ++m) {
      if (m >= n) {
        zero_block(m, p);
        continue;
      }
      __m512i v[16];
      load_words(w, rb, nr, quad + m * q8_0::kBytes + q8_0::kQs, 0x00ff, v);
      for (int h = 0; h < 2; ++h)
        for (int j = 0; j < 4; ++j)
          _mm512_store_si512(p.q[2 * m + h][j], _mm512_xor_si512(v[2 * j + h], sign));
      scalar_scales(w, rb, nr, quad + m * q8_0::kBytes + q8_0::kD, p.dw[m]);
    }
  }
  static int32_t offset(int32_t sums16) { return sums16 * 8; }  // 128 x the sum
};

// Quads [0, nq) of rows [0, n_rows) (n_rows <= 16) of a matrix with nb blocks per row.
template <class F>
void pack_rows(const uint8_t* w, size_t row_bytes, int n_rows, int64_t nb, PackedQuad* p) {
  for (int64_t g = 0; g * 4 < nb; ++g) {
    const int n = static_cast<int>(std::min<int64_t>(4, nb - 4 * g));  // the last may be partial
    F::pack(w, row_bytes, n_rows, static_cast<size_t>(g * F::kQuadBytes), n, p[g]);
  }
}

// acc[t] (16 rows) = lane class l's FMA chain over the nq quads for T tokens, stored to out[t].
template <class F, int T>
GEMMAX_QPANEL void micro_class(const PackedQuad* p, int64_t nq, int l, const uint8_t* act,
                               size_t stride, float (*out)[kRows]) {
  __m512 acc[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  const int m = l / 2;
  for (int64_t g = 0; g < nq; ++g, ++p) {
    const __m512i w0 = _mm512_load_si512(p->q[l][0]), w1 = _mm512_load_si512(p->q[l][1]);
    const __m512i w2 = _mm512_load_si512(p->q[l][2]), w3 = _mm512_load_si512(p->q[l][3]);
    const __m512 dw = _mm512_load_ps(p->dw[m]);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const A8Quad& a = reinterpret_cast<const A8Quad*>(act + t * stride)[g];
      __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, broadcast_word(a.q[0] + 4 * l));
      dot = _mm512_dpbusd_epi32(dot, w1, broadcast_word(a.q[1] + 4 * l));
      dot = _mm512_dpbusd_epi32(dot, w2, broadcast_word(a.q[2] + 4 * l));
      dot = _mm512_dpbusd_epi32(dot, w3, broadcast_word(a.q[3] + 4 * l));
      dot = _mm512_sub_epi32(dot, _mm512_set1_epi32(F::offset(a.sums16[l])));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(a.d[l])),
                               acc[t]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) _mm512_store_ps(out[t], acc[t]);
}

// y[t * ldy + r] for T tokens: each token's 8 class chains, added as hsum adds lanes.
template <class F, int T>
GEMMAX_QPANEL void micro(const PackedQuad* p, int64_t nq, const uint8_t* act, size_t stride,
                         float* y, size_t ldy, int rows) {
  alignas(64) float part[kClasses][T][kRows];
  for (int l = 0; l < kClasses; ++l) micro_class<F, T>(p, nq, l, act, stride, part[l]);
  const auto mask = static_cast<__mmask16>((1u << rows) - 1);
  for (int t = 0; t < T; ++t) {
    __m512 c[kClasses];
    for (int l = 0; l < kClasses; ++l) c[l] = _mm512_load_ps(part[l][t]);
    const __m512 even = _mm512_add_ps(_mm512_add_ps(c[0], c[4]), _mm512_add_ps(c[2], c[6]));
    const __m512 odd = _mm512_add_ps(_mm512_add_ps(c[1], c[5]), _mm512_add_ps(c[3], c[7]));
    _mm512_mask_storeu_ps(y + t * ldy, mask, _mm512_add_ps(even, odd));
  }
}

template <class F>
using MicroFn = void (*)(const PackedQuad*, int64_t, const uint8_t*, size_t, float*, size_t, int);

template <class F>
constexpr MicroFn<F> kMicro[kTokens] = {micro<F, 1>, micro<F, 2>, micro<F, 3>, micro<F, 4>,
                                        micro<F, 5>, micro<F, 6>, micro<F, 7>, micro<F, 8>};

template <class F>
void panel_rows_of(const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* act,
                   size_t act_stride, int64_t n_tokens, int64_t k, float* y, size_t ldy) {
  thread_local std::vector<PackedQuad> buf;
  const int64_t nb = k / kQK, nq = (nb + 3) / 4;
  PackedQuad* packed = scratch(buf, static_cast<size_t>(std::max<int64_t>(nq, 1)));
  for (int64_t r0 = 0; r0 < n_rows; r0 += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, n_rows - r0));
    pack_rows<F>(w + r0 * row_bytes, row_bytes, rows, nb, packed);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokens) {
      const int tokens = static_cast<int>(std::min<int64_t>(kTokens, n_tokens - t0));
      kMicro<F>[tokens - 1](packed, nq, act + t0 * act_stride, act_stride, y + t0 * ldy + r0, ldy,
                            rows);
    }
  }
}

}  // namespace

KPanelFn quad_panel_function(DType t) {
  switch (t) {
    case DType::kQ4_0:
      return panel_rows_of<Q4_0P>;
    case DType::kQ5_0:
      return panel_rows_of<Q5_0P>;
    case DType::kQ5_0x4:
      return panel_rows_of<Q5_0x4P>;
    case DType::kQ8_0:
      return panel_rows_of<Q8_0P>;
    default:
      return nullptr;
  }
}

}  // namespace gemmax::detail
