// The integer sums of the Q4_K/Q5_K/Q6_K decode GEMV with 512-bit VNNI (rows_k in matmul_avx2.cc
// does the float steps).
//
// A decode GEMV of a K format is bound by its arithmetic on one core, not by the stream: the AVX2
// sums (maddubs, madd by the sub-block scale, add: twelve operations per 64 weights with the
// unpacking) ran ~17-18 GB/s cache-resident on one thread, about what one core reads from DRAM,
// and compute and stream then only partly overlap. Here one 512-bit register holds a 32-byte
// chunk of nibbles twice, shifted by 0 in the low half and by 4 in the high half, so that after a
// mask it is sub-block 2c (low) and 2c + 1 (high) against 64 contiguous activation bytes: one
// vpdpbusd gives each sub-block's products in sums of four (|sum| <= 4 * 31 * 128, an int16), and
// one vpdpwssd multiplies them by their sub-block's 6-bit scale (the scale in the low word of each
// dword, 0 in the high one) into the running int32 sum. About five operations per 64 weights.
//
// The sums are the same exact int32 S and M as the AVX2 code's (only their spread over lanes
// differs), so the float rule gives the same bits.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/avx512_gcc12_warnings.h"
#include "kernels/matmul_internal.h"
#include "kernels/quant_blocks.h"

#define GEMMAX_KGEMV __attribute__((target("avx512f,avx512vnni,avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

using namespace quant;

// Sub-block scales j = 0..7 of a Q4_K/Q5_K block as dwords 0..7 (6-bit, unsigned), and the mins
// as int16 at lanes 2j and 2j + 1 (to multiply the activations' 16-element sums pairwise).
struct Scales {
  __m512i sc;
  __m256i mins;
};

GEMMAX_KGEMV inline Scales unpack_scales(const uint8_t* q) {
  const KScaleBytes k = k_scale_bytes(q);
  const __m128i sc8 =
      _mm_set_epi32(0, 0, static_cast<int>(k.scales_hi), static_cast<int>(k.scales_lo));
  const __m128i m8 = _mm_set_epi32(0, 0, static_cast<int>(k.mins_hi), static_cast<int>(k.mins_lo));
  const __m128i twice = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  return {_mm512_castsi256_si512(_mm256_cvtepu8_epi32(sc8)),
          _mm256_cvtepu8_epi16(_mm_shuffle_epi8(m8, twice))};
}

// One block's S (in 16 lanes, folded to 8) and M (8 lanes).
template <bool kFifthBit>
GEMMAX_KGEMV inline void block_sums(const uint8_t* w, const A8Block256& a, __m256i* s, __m256i* m) {
  constexpr int kQs = kFifthBit ? q5_k::kQs : q4_k::kQs;
  const Scales ks = unpack_scales(w + q4_k::kScales);  // same offset in Q5_K
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
  __m512i qh2;
  if constexpr (kFifthBit)
    qh2 =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q5_k::kQh)));
  __m512i acc = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    const __m512i both = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kQs + 32 * c)));
    __m512i q = _mm512_and_si512(_mm512_srlv_epi32(both, halves), low4);
    if constexpr (kFifthBit) {
      // Bit 2c of each qh byte is the fifth bit of sub-block 2c, bit 2c + 1 that of 2c + 1.
      const __m512i shift = _mm512_setr_epi32(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c,
                                              2 * c, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                              2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1);
      const __m512i bit = _mm512_and_si512(_mm512_srlv_epi32(qh2, shift), _mm512_set1_epi8(1));
      q = _mm512_or_si512(q, _mm512_slli_epi32(bit, 4));
    }
    const __m512i x = _mm512_loadu_si512(a.q + 64 * c);
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x);
    const __m512i sc = _mm512_permutexvar_epi32(
        _mm512_setr_epi32(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c + 1,
                          2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                          2 * c + 1),
        ks.sc);
    acc = _mm512_dpwssd_epi32(acc, dot, sc);
  }
  *s = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
  *m = _mm256_madd_epi16(ks.mins, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums)));
}

// Q6_K: one 512-bit register is 64 contiguous elements, half h = c / 2's 64 low-nibble bytes
// ql[64h..64h+63] (c even: their low nibbles, elements 128h + 0..63; c odd: the high nibbles,
// 128h + 64..127) with their two high bits from qh[32h..32h+31] (bits 0-1 for elements 0-31 of
// the half, 2-3, 4-5, 6-7 for the next 32s) moved to bits 4-5. One vpdpbusd gives the sums of four
// products (|sum| <= 4 * 63 * 128, an int16) and one vpdpwssd multiplies each by its 16-element
// group's int8 scale (a signed int16 in the low word of each dword, 0 in the high one). S - 32 * O
// as the AVX2 code's Q6K::sums forms it, folded to 8 lanes. Against the AVX2 sums (stand-alone,
// 2560-wide, 1 thread): cache-resident 20.3-22.7 -> 26.3-26.4 GB/s, from DRAM unchanged (~15 GB/s);
// whole 4B Q4_K_M decodes (38% of its bytes are Q6_K, read from DRAM) unchanged: 10.20 vs 10.23
// tok/s, medians of 5 interleaved pairs of one binary.
GEMMAX_KGEMV inline void q6_k_block_sums(const uint8_t* w, const A8Block256& a, __m256i* out) {
  const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + q6_k::kScales));
  const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
  const __m512i sc = _mm512_cvtepu16_epi32(sc16);  // the int16 scale in the low word only
  const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
  __m512i acc = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {
    const __m512i ql = _mm512_loadu_si512(w + q6_k::kQl + 64 * h);
    const __m512i qh = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q6_k::kQh + 32 * h)));
    for (int odd = 0; odd < 2; ++odd) {
      const int c = 2 * h + odd;
      // Bits 4-5 of each byte: the two high bits of its element (shifts within 32-bit lanes;
      // bits that cross into a neighbouring byte land outside 4-5 and are masked away).
      const __m512i high =
          odd == 0 ? _mm512_sllv_epi32(
                         qh, _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2))
                   : _mm512_srlv_epi32(
                         qh, _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2));
      const __m512i low = _mm512_and_si512(odd == 0 ? ql : _mm512_srli_epi32(ql, 4), low4);
      const __m512i q = _mm512_ternarylogic_epi32(low, high, bits45, 0xf8);  // low | (high & 0x30)
      const __m512i x = _mm512_loadu_si512(a.q + 64 * c);
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x);
      // Dword k of register c covers elements 64c + 4k..+3: group 4c + k / 4.
      const __m512i group = _mm512_permutexvar_epi32(
          _mm512_add_epi32(_mm512_set1_epi32(4 * c),
                           _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)),
          sc);
      acc = _mm512_dpwssd_epi32(acc, dot, group);
    }
  }
  const __m256i s =
      _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
  // The offset term, as Q6K::sums: 32 * sum_g sc_g * bsum_g.
  const __m256i off =
      _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums)));
  *out = _mm256_sub_epi32(s, _mm256_slli_epi32(off, 5));
}

enum class KFormat { kQ4, kQ5, kQ6 };

// Block b of each of the group's 8 rows in turn, then block b + 1 (rows_k: one row from each of 8
// distant streams). Q6_K has no mins: m and dmin are left alone.
template <KFormat kFormat>
GEMMAX_KGEMV inline void group_sums(const uint8_t* first, size_t row_stride, const A8Block256* a,
                                    int64_t nb, __m256i* s, __m256i* m, uint16_t* d,
                                    uint16_t* dmin) {
  constexpr int kBytes = kFormat == KFormat::kQ4   ? q4_k::kBytes
                         : kFormat == KFormat::kQ5 ? q5_k::kBytes
                                                   : q6_k::kBytes;
  for (int64_t b = 0; b < nb; ++b)
    for (int i = 0; i < 8; ++i) {
      const uint8_t* block = first + i * row_stride + b * kBytes;
      prefetch_ahead(block, kBytes);
      if constexpr (kFormat == KFormat::kQ6) {
        q6_k_block_sums(block, a[b], s + 8 * b + i);
        d[8 * b + i] = load_u16(block + q6_k::kD);
      } else {
        block_sums<kFormat == KFormat::kQ5>(block, a[b], s + 8 * b + i, m + 8 * b + i);
        d[8 * b + i] = load_u16(block + q4_k::kD);
        dmin[8 * b + i] = load_u16(block + q4_k::kDmin);
      }
    }
}

}  // namespace

void q4_k_group_sums_avx512(const uint8_t* first, size_t row_stride, const A8Block256* a,
                            int64_t nb, __m256i* s, __m256i* m, uint16_t* d, uint16_t* dmin) {
  group_sums<KFormat::kQ4>(first, row_stride, a, nb, s, m, d, dmin);
}

void q5_k_group_sums_avx512(const uint8_t* first, size_t row_stride, const A8Block256* a,
                            int64_t nb, __m256i* s, __m256i* m, uint16_t* d, uint16_t* dmin) {
  group_sums<KFormat::kQ5>(first, row_stride, a, nb, s, m, d, dmin);
}

void q6_k_group_sums_avx512(const uint8_t* first, size_t row_stride, const A8Block256* a,
                            int64_t nb, __m256i* s, __m256i* m, uint16_t* d, uint16_t* dmin) {
  group_sums<KFormat::kQ6>(first, row_stride, a, nb, s, m, d, dmin);
}

}  // namespace gemmax::detail
