// The integer sums of the Q4_K/Q5_K/Q6_K decode GEMV with 512-bit VNNI (rows_k in matmul_avx2.cc
// does the float steps).
//
// A decode GEMV of a K format is bound by its arithmetic on one core, not by the stream: the AVX2
// sums (maddubs, madd by the sub-block scale, add: twelve operations per 64 weights with the
// unpacking) ran ~17-18 GB/s cache-resident on one thread, about what one core reads from DRAM,
// and compute and stream then only partly overlap. Here vpdpbusd gives each sub-block's products
// in sums of four (an int16) and vpdpwssd multiplies them by their sub-block's 6-bit scale (in
// the low word of a dword) into int32 sums; on the Zen 4 host what limits these loops is the
// shuffles (broadcasts, permutes, packs), so the layouts below are chosen to need few of them.
//
// The sums are the same exact int32 S and M as the AVX2 code's (only their spread over lanes
// differs), so the float rule gives the same bits.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/avx512_gcc12_warnings.h"
#include "kernels/matmul_internal.h"
#include "kernels/quant_blocks.h"

#define GEMMAX_KGEMV __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

using namespace quant;

// Sub-block scales j = 0..7 of a Q4_K/Q5_K block, as bytes 0..7 of `bytes` (6-bit, unsigned) with
// the mins in bytes 8..15, and the mins as int16 at lanes 2j and 2j + 1 (to multiply the
// activations' 16-element sums pairwise). The k_scale_bytes rule on the three dwords of the 12
// scale bytes (a: scales 0-3 and the top bits of 4-7, b: the same for the mins, c: the low nibbles
// of 4-7) in one register: [a & 0x3f.., b & 0x3f..] and [c & 0x0f.. | ((a >> 6) & 3..) << 4, c >> 4
// & 0x0f.. | ((b >> 6) & 3..) << 4], interleaved. Done with scalar shifts and masks and the bytes
// moved into a vector one dword at a time it was the GEMV's largest cost: with the scales held
// constant (wrong sums, a bound) kernels_bench gemv/Q4_K ran ~50% faster.
struct Scales {
  __m128i bytes;
  __m256i mins;
};

GEMMAX_KGEMV inline Scales unpack_scales(const uint8_t* q) {
  // 16 bytes from the scales: the last 4 are the block's first nibbles, never used.
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x3f));
  const __m128i c =
      _mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2)), _mm_setr_epi32(0, 4, 0, 0));
  const __m128i top = _mm_and_si128(_mm_srli_epi32(v, 6), _mm_set1_epi8(0x03));
  const __m128i hi = _mm_or_si128(_mm_and_si128(c, _mm_set1_epi8(0x0f)), _mm_slli_epi32(top, 4));
  const __m128i bytes = _mm_unpacklo_epi32(lo, hi);  // scales_lo, scales_hi, mins_lo, mins_hi
  const __m128i twice = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
  return {bytes, _mm256_cvtepu8_epi16(_mm_shuffle_epi8(bytes, twice))};
}

// Q4_K/Q5_K by plain 64-byte loads: register L_k = nibble bytes 64k..64k+63 (chunks 2k and 2k + 1),
// whose low nibbles are sub-blocks [4k | 4k + 2] (its 256-bit halves) and high nibbles [4k + 1 |
// 4k + 3], against activations laid out the same way (KActs, once per block for all the group's
// rows). One vpdpbusd per register gives each sub-block's products in sums of four (|sum| <= 4 *
// 31 * 128, an int16); the four registers are packed pairwise to words, so that each 128-bit lane
// holds four words of one sub-block and four of another, and two vpdpwssd against the scales
// spread the same way (an in-lane byte shuffle) give the exact S, the same int32 as the AVX2 sums.
// Before (session 25), each 32-byte chunk was broadcast to both halves and each register's scales
// picked by a dword permute: ~13 shuffles per block against ~7 now; kernels_bench gemv/Q4_K, 1
// thread, interleaved: 20.2-21.3 -> 25.4-26.5 GB/s.
struct KActs {
  __m512i x[4];  // sub-blocks [0 | 2], [1 | 3], [4 | 6], [5 | 7]
};

// Activation sub-blocks lo and hi (32 bytes each) side by side.
GEMMAX_KGEMV inline __m512i act_pair(const A8Block256& a, int lo, int hi) {
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + 32 * lo))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + 32 * hi)), 1);
}

GEMMAX_KGEMV inline KActs k_acts(const A8Block256& a) {
  return {{act_pair(a, 0, 2), act_pair(a, 1, 3), act_pair(a, 4, 6), act_pair(a, 5, 7)}};
}

// Words 0-3 of 128-bit lane l: the scale of sub-block `first` (l < 2) or `first` + 2 (l >= 2),
// words 4-7: `first` + 1 or `first` + 3, from the scale bytes in every lane (0xff gives a zero
// high byte).
GEMMAX_KGEMV inline __m512i spread_scales(__m512i bytes4, int first) {
  auto word = [](int sub) { return static_cast<int>(0xff00ff00u | sub << 16 | sub); };
  const int a = word(first), b = word(first + 1), c = word(first + 2), d = word(first + 3);
  return _mm512_shuffle_epi8(bytes4,
                             _mm512_setr_epi32(a, a, b, b, a, a, b, b, c, c, d, d, c, c, d, d));
}

// One block's S (in 16 lanes, folded to 8) and M (8 lanes).
template <bool kFifthBit>
GEMMAX_KGEMV inline void block_sums(const uint8_t* w, const A8Block256& a, const KActs& x,
                                    __m256i* s, __m256i* m) {
  constexpr int kQs = kFifthBit ? q5_k::kQs : q4_k::kQs;
  const Scales ks = unpack_scales(w + q4_k::kScales);  // same offset in Q5_K
  const __m512i low4 = _mm512_set1_epi8(0x0f), zero = _mm512_setzero_si512();
  __m512i q[4];
  for (int k = 0; k < 2; ++k) {
    const __m512i l = _mm512_loadu_si512(w + kQs + 64 * k);
    q[2 * k] = _mm512_and_si512(l, low4);
    q[2 * k + 1] = _mm512_and_si512(_mm512_srli_epi32(l, 4), low4);
  }
  if constexpr (kFifthBit) {
    // Bit j of qh byte i is the fifth bit of element i of sub-block j: register r (sub-blocks
    // [s | s + 2], s = 4 * (r / 2) + r % 2) takes bits s and s + 2 to bit 4 of its bytes.
    const __m512i qh2 =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q5_k::kQh)));
    for (int r = 0; r < 4; ++r) {
      const int sub = 4 * (r / 2) + r % 2;
      const __m512i shift =
          _mm512_inserti64x4(_mm512_set1_epi32(sub), _mm256_set1_epi32(sub + 2), 1);
      const __m512i bit = _mm512_and_si512(_mm512_srlv_epi32(qh2, shift), _mm512_set1_epi8(1));
      q[r] = _mm512_or_si512(q[r], _mm512_slli_epi32(bit, 4));
    }
  }
  __m512i d[4];
  for (int r = 0; r < 4; ++r) d[r] = _mm512_dpbusd_epi32(zero, q[r], x.x[r]);
  const __m512i bytes4 = _mm512_broadcast_i32x4(ks.bytes);
  const __m512i acc = _mm512_dpwssd_epi32(
      _mm512_dpwssd_epi32(zero, _mm512_packs_epi32(d[0], d[1]), spread_scales(bytes4, 0)),
      _mm512_packs_epi32(d[2], d[3]), spread_scales(bytes4, 4));
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
  for (int64_t b = 0; b < nb; ++b) {
    KActs x;
    if constexpr (kFormat != KFormat::kQ6) x = k_acts(a[b]);
    for (int i = 0; i < 8; ++i) {
      const uint8_t* block = first + i * row_stride + b * kBytes;
      prefetch_ahead(block, kBytes);
      if constexpr (kFormat == KFormat::kQ6) {
        q6_k_block_sums(block, a[b], s + 8 * b + i);
        d[8 * b + i] = load_u16(block + q6_k::kD);
      } else {
        block_sums<kFormat == KFormat::kQ5>(block, a[b], x, s + 8 * b + i, m + 8 * b + i);
        d[8 * b + i] = load_u16(block + q4_k::kD);
        dmin[8 * b + i] = load_u16(block + q4_k::kDmin);
      }
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
