// Prefill of K-format weights (Q4_K, Q5_K, Q6_K) by packed int8 panels with AVX-512 VNNI.
//
// The AVX2 tiles (matmul_avx2.cc) unpack one weight row and multiply it with 8 tokens through
// maddubs + madd-by-scale + add: three operations per 32 products and token, plus the float work
// of every super-block. Here the weights of 16 rows are first unpacked into bytes and packed so
// that one 64-byte load holds four consecutive elements of each of the 16 rows (int32 lane r =
// row r); then vpdpbusd with a token's four activation bytes broadcast adds 64 products for one
// token in one instruction. Each sub-block's int32 sums are multiplied by their 16 rows' scales
// (vpmulld) into the super-block sum S, the mins or offset term comes from vpdpwssd over the
// activations' 16-element sums, and each super-block ends with the K formats' float rule (see
// matmul_avx2.cc: acc = fma(float(S), d * dx, acc), then fnmadd of the mins term). The integer
// sums are exact and the float steps the same, so the result is the same bits as the GEMV and the
// AVX2 tiles give: a token's result still does not depend on its batch.
//
// The packing is paid once per 16 rows and call, and then read by every 8-token tile from L2.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/avx512_gcc12_warnings.h"
#include "kernels/matmul_internal.h"
#include "kernels/quant_blocks.h"
#include "kernels/word_transpose_avx512.h"

#define GEMMAX_KPANEL __attribute__((target("avx512f,avx512vnni,avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

using namespace quant;

constexpr int kRows = kKPanelRows;  // one int32 lane per row
constexpr int kTokens = 8;          // tokens per microkernel call
constexpr int kQuads = kQKK / 4;    // 4-element groups per super-block

// One super-block of 16 packed rows. q[i][r][c]: element 4i + c of row r (unsigned: Q4_K 0..15,
// Q5_K 0..31, Q6_K 0..63). Q4_K/Q5_K: sc[j][r] = sub-block j's 6-bit scale, mn[j][r] = its min
// in both int16 halves (vpdpwssd multiplies it with the two 16-element sums of sub-block j).
// Q6_K: sc[g][r] = the int8 scale of the 16 elements g (as int32), scp[i][r] = 32 times scales 2i
// and 2i+1 as two int16 (vpdpwssd with the sums of those two groups gives the offset term).
struct alignas(64) PackedQ45 {
  uint8_t q[kQuads][kRows][4];
  int32_t sc[8][kRows];
  int32_t mn[8][kRows];
  float d[kRows], dmin[kRows];
};

struct alignas(64) PackedQ6 {
  uint8_t q[kQuads][kRows][4];
  int32_t sc[16][kRows];
  int32_t scp[8][kRows];
  float d[kRows];
};

GEMMAX_KPANEL inline __m512i load(const void* p) { return _mm512_load_si512(p); }

// y[t * ldy + r] = lane r of acc[t] for r < rows. (Streaming whole lines past the caches measured
// the same, within noise, on 4B shapes.)
template <int T>
GEMMAX_KPANEL inline void store_rows(const __m512 (&acc)[T], float* y, size_t ldy, int rows) {
  const auto mask = static_cast<__mmask16>((1u << rows) - 1);
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * ldy, mask, acc[t]);
}

// A token's activations in super-block b.
inline const A8Block256* block_of(const uint8_t* act, size_t stride, int t, int64_t b) {
  return reinterpret_cast<const A8Block256*>(act + t * stride) + b;
}

// s[t] = sum over the super-block's kGroups groups g of sc[g] x (token t's products of group g),
// for the 16 packed rows: each group is kQuads / kGroups quads (Q4_K/Q5_K: 8 sub-blocks of 32
// elements; Q6_K: 16 scale groups of 16). Exact int32.
template <int T, int kGroups>
GEMMAX_KPANEL inline void scaled_group_sums(const uint8_t (*q)[kRows][4],
                                            const int32_t (*sc)[kRows],
                                            const A8Block256* const (&a)[T], __m512i (&s)[T]) {
  constexpr int kPerGroup = kQuads / kGroups;  // quads per group
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_si512();
  for (int g = 0; g < kGroups; ++g) {
    __m512i is[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) is[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int i = 0; i < kPerGroup; ++i) {
      const __m512i w = load(q[kPerGroup * g + i]);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        is[t] = _mm512_dpbusd_epi32(is[t], w, broadcast_word(a[t]->q + 4 * (kPerGroup * g + i)));
    }
    const __m512i scale = load(sc[g]);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) s[t] = _mm512_add_epi32(s[t], _mm512_mullo_epi32(is[t], scale));
  }
}

// m[t] = sum over j < 8 of the int16 pairs of f[j] x token t's 16-element sums 2j and 2j + 1 (the
// Q4_K/Q5_K mins term, the Q6_K offset term). Exact int32.
template <int T>
GEMMAX_KPANEL inline void pair_sums(const int32_t (*f)[kRows], const A8Block256* const (&a)[T],
                                    __m512i (&m)[T]) {
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) m[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    const __m512i fj = load(f[j]);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      m[t] = _mm512_dpwssd_epi32(m[t], fj, broadcast_word(a[t]->bsums + 2 * j));
  }
}

// out[t][r] for T tokens x 16 packed rows over nsb super-blocks.
template <int T>
GEMMAX_KPANEL void micro_q45(const PackedQ45* p, int64_t nsb, const uint8_t* act, size_t stride,
                             float* y, size_t ldy, int rows) {
  __m512 acc[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b, ++p) {
    const A8Block256* a[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) a[t] = block_of(act, stride, t, b);
    __m512i s[T], m[T];
    scaled_group_sums<T, 8>(p->q, p->sc, a, s);  // sub-block j: elements 32j..32j+31
    pair_sums<T>(p->mn, a, m);
    const __m512 d = _mm512_load_ps(p->d), dmin = _mm512_load_ps(p->dmin);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 dx = _mm512_set1_ps(a[t]->d);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(d, dx), acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m[t]), _mm512_mul_ps(dmin, dx), acc[t]);
    }
  }
  store_rows<T>(acc, y, ldy, rows);
}

template <int T>
GEMMAX_KPANEL void micro_q6(const PackedQ6* p, int64_t nsb, const uint8_t* act, size_t stride,
                            float* y, size_t ldy, int rows) {
  __m512 acc[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b, ++p) {
    const A8Block256* a[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) a[t] = block_of(act, stride, t, b);
    __m512i s[T], o[T];
    scaled_group_sums<T, 16>(p->q, p->sc, a, s);  // scale group g: elements 16g..16g+15
    // The offset of 32: S - sum_g(32 * sc_g * bsum_g), exact in int32 (see Q6K in matmul_avx2.cc).
    pair_sums<T>(p->scp, a, o);
    const __m512 d = _mm512_load_ps(p->d);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i dot = _mm512_sub_epi32(s[t], o[t]);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, _mm512_set1_ps(a[t]->d)),
                               acc[t]);
    }
  }
  store_rows<T>(acc, y, ldy, rows);
}

// ---- packing: 16 rows' blocks through 16 x 16 word transposes (word_transpose_avx512.h) ----

// Byte i of every word as an unsigned or sign-extended int32.
GEMMAX_KPANEL inline __m512i byte_u32(__m512i v, int i) {
  return _mm512_and_si512(_mm512_srli_epi32(v, 8 * i), _mm512_set1_epi32(0xff));
}
GEMMAX_KPANEL inline __m512i byte_s32(__m512i v, int i) {
  return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * i), 24);
}

GEMMAX_KPANEL inline void store(void* p, __m512i v) { _mm512_store_si512(p, v); }

// Q4_K (144 bytes: d, dmin | 12 bytes of scales and mins | 128 bytes of nibbles) and Q5_K (176:
// the same head | 32 bytes of fifth bits | nibbles). Nibble word l of 64-element chunk c holds
// elements 64c + 4l.. (low nibbles) and 64c + 32 + 4l.. (high).
template <bool kFifthBit>
GEMMAX_KPANEL void pack_q45(const uint8_t* w, size_t row_bytes, int n_rows, PackedQ45& p) {
  constexpr int kQs = kFifthBit ? q5_k::kQs : q4_k::kQs,
                kBytes = kFifthBit ? q5_k::kBytes : q4_k::kBytes;
  __m512i head[16];
  load_words(w, row_bytes, n_rows, 0, 0xffff, head);
  _mm512_store_ps(p.d, f16_low(head[0]));
  _mm512_store_ps(p.dmin, f16_high(head[0]));
  // The 6-bit scales and mins (quant::k_scale_min), four per word: 0-3 in the low 6 bits of words
  // 1 (scales) and 2 (mins), 4-7 from the nibbles of word 3 and the top 2 bits of words 1 and 2.
  const __m512i sc_hi =
      _mm512_or_si512(bytes_of(head[3], 0, 0x0f), _mm512_slli_epi32(bytes_of(head[1], 6, 0x03), 4));
  const __m512i m_hi =
      _mm512_or_si512(bytes_of(head[3], 4, 0x0f), _mm512_slli_epi32(bytes_of(head[2], 6, 0x03), 4));
  const __m512i sc_lo = bytes_of(head[1], 0, 0x3f), m_lo = bytes_of(head[2], 0, 0x3f);
  for (int j = 0; j < 8; ++j) {
    const __m512i m = byte_u32(j < 4 ? m_lo : m_hi, j % 4);
    store(p.sc[j], byte_u32(j < 4 ? sc_lo : sc_hi, j % 4));
    store(p.mn[j], _mm512_or_si512(m, _mm512_slli_epi32(m, 16)));
  }
  __m512i qh[16];
  if constexpr (kFifthBit) load_words(w, row_bytes, n_rows, q5_k::kQh, 0xffff, qh);  // words 0-7
  // The 32 nibble words in two loads: words 0-15, then words 16-31 (the block's last 64 bytes).
  for (int half = 0; half < 2; ++half) {
    __m512i qs[16];
    load_words(w, row_bytes, n_rows, half == 0 ? kQs : kBytes - 64, 0xffff, qs);
    for (int word = 0; word < 16; ++word) {
      const int c = 2 * half + word / 8, l = word % 8;
      __m512i lo = bytes_of(qs[word], 0, 0x0f), hi = bytes_of(qs[word], 4, 0x0f);
      if constexpr (kFifthBit) {
        lo = _mm512_or_si512(lo, _mm512_slli_epi32(bytes_of(qh[l], 2 * c, 0x01), 4));
        hi = _mm512_or_si512(hi, _mm512_slli_epi32(bytes_of(qh[l], 2 * c + 1, 0x01), 4));
      }
      store(p.q[16 * c + l], lo);
      store(p.q[16 * c + 8 + l], hi);
    }
  }
}

// Q6_K (210 bytes: 128 bytes of low nibbles | 64 of 2-bit highs | 16 int8 scales | f16 d). In
// half h, quarter s, word l (elements 128h + 32s + 4l..): the low nibbles of ql word 16h + 8(s%2)
// + l (the high nibbles when s >= 2) and bits 2s, 2s+1 of qh word 8h + l.
GEMMAX_KPANEL void pack_q6(const uint8_t* w, size_t row_bytes, int n_rows, PackedQ6& p) {
  __m512i qh[16], tail[16];
  load_words(w, row_bytes, n_rows, q6_k::kQh, 0xffff, qh);  // words 0-15: qh
  load_words(w, row_bytes, n_rows, 144, 0xffff, tail);      // words 12-15: the scales
  for (int g = 0; g < 16; ++g) store(p.sc[g], byte_s32(tail[12 + g / 4], g % 4));
  for (int i = 0; i < 8; ++i) {  // 32 * scales 2i, 2i + 1 as int16 halves
    const __m512i s0 = byte_s32(tail[12 + i / 2], 2 * (i % 2)),
                  s1 = byte_s32(tail[12 + i / 2], 2 * (i % 2) + 1);
    store(p.scp[i],
          _mm512_or_si512(_mm512_and_si512(_mm512_slli_epi32(s0, 5), _mm512_set1_epi32(0xffff)),
                          _mm512_slli_epi32(s1, 21)));
  }
  alignas(64) uint16_t d[kRows] = {};
  for (int r = 0; r < n_rows; ++r) d[r] = load_u16(w + r * row_bytes + q6_k::kD);
  _mm512_store_ps(p.d, _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d))));
  for (int h = 0; h < 2; ++h) {
    __m512i ql[16];
    load_words(w, row_bytes, n_rows, q6_k::kQl + 64 * h, 0xffff, ql);
    for (int s = 0; s < 4; ++s)
      for (int l = 0; l < 8; ++l) {
        const __m512i low = bytes_of(ql[8 * (s % 2) + l], 4 * (s / 2), 0x0f);
        const __m512i high = _mm512_slli_epi32(bytes_of(qh[8 * h + l], 2 * s, 0x03), 4);
        store(p.q[32 * h + 8 * s + l], _mm512_or_si512(low, high));
      }
  }
}

// One format: its packed super-block, block bytes, packer and microkernels for 1..8 tokens.
template <class Packed>
using MicroFn = void (*)(const Packed*, int64_t, const uint8_t*, size_t, float*, size_t, int);

template <class Packed, int kBlockBytes, void (*Pack)(const uint8_t*, size_t, int, Packed&),
          MicroFn<Packed> const (&Micro)[kTokens]>
void panel_rows_of(const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* act,
                   size_t act_stride, int64_t n_tokens, int64_t k, float* y, size_t ldy) {
  thread_local std::vector<Packed> buf;
  const int64_t nsb = k / kQKK;
  Packed* packed = scratch(buf, static_cast<size_t>(std::max<int64_t>(nsb, 1)));
  for (int64_t r0 = 0; r0 < n_rows; r0 += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, n_rows - r0));
    for (int64_t b = 0; b < nsb; ++b)
      Pack(w + r0 * row_bytes + b * kBlockBytes, row_bytes, rows, packed[b]);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokens) {
      const int tokens = static_cast<int>(std::min<int64_t>(kTokens, n_tokens - t0));
      Micro[tokens - 1](packed, nsb, act + t0 * act_stride, act_stride, y + t0 * ldy + r0, ldy,
                        rows);
    }
  }
}

constexpr MicroFn<PackedQ45> kMicroQ45[kTokens] = {micro_q45<1>, micro_q45<2>, micro_q45<3>,
                                                   micro_q45<4>, micro_q45<5>, micro_q45<6>,
                                                   micro_q45<7>, micro_q45<8>};
constexpr MicroFn<PackedQ6> kMicroQ6[kTokens] = {micro_q6<1>, micro_q6<2>, micro_q6<3>,
                                                 micro_q6<4>, micro_q6<5>, micro_q6<6>,
                                                 micro_q6<7>, micro_q6<8>};

}  // namespace

KPanelFn kpanel_function(DType t) {
  switch (t) {
    case DType::kQ4_K:
      return panel_rows_of<PackedQ45, q4_k::kBytes, pack_q45<false>, kMicroQ45>;
    case DType::kQ5_K:
      return panel_rows_of<PackedQ45, q5_k::kBytes, pack_q45<true>, kMicroQ45>;
    case DType::kQ6_K:
      return panel_rows_of<PackedQ6, q6_k::kBytes, pack_q6, kMicroQ6>;
    default:
      return nullptr;
  }
}

}  // namespace gemmax::detail
