// 32-bit word helpers of the int8 AVX-512 panel GEMMs (matmul_kpanels_avx512.cc,
// matmul_qpanels_avx512.cc): transposes that pack 16 rows' blocks (word j of the 16 rows in one
// register, lane r = row r) and word broadcasts. Only call from code that runs on AVX-512F CPUs.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#define GEMMAX_AVX512_WORDS __attribute__((target("avx512f,avx2,fma,f16c")))

namespace gemmax::detail {

// The 16 words of 16 registers transposed: m[r] word j -> m[j] word r.
GEMMAX_AVX512_WORDS inline void transpose16(__m512i (&m)[16]) {
  __m512i a[16], b[16];
  for (int i = 0; i < 16; i += 2) {  // within 128-bit lanes: words of rows i, i + 1 interleaved
    a[i] = _mm512_unpacklo_epi32(m[i], m[i + 1]);
    a[i + 1] = _mm512_unpackhi_epi32(m[i], m[i + 1]);
  }
  // b[4g + e], lane L: word 4L + e of rows 4g..4g+3.
  for (int g = 0; g < 4; ++g) {
    b[4 * g] = _mm512_unpacklo_epi64(a[4 * g], a[4 * g + 2]);
    b[4 * g + 1] = _mm512_unpackhi_epi64(a[4 * g], a[4 * g + 2]);
    b[4 * g + 2] = _mm512_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
    b[4 * g + 3] = _mm512_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
  }
  for (int e = 0; e < 4; ++e) {  // a 4 x 4 transpose of 128-bit lanes
    const __m512i c0 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0x44);
    const __m512i c1 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0xee);
    const __m512i c2 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0x44);
    const __m512i c3 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0xee);
    m[e] = _mm512_shuffle_i32x4(c0, c2, 0x88);
    m[4 + e] = _mm512_shuffle_i32x4(c0, c2, 0xdd);
    m[8 + e] = _mm512_shuffle_i32x4(c1, c3, 0x88);
    m[12 + e] = _mm512_shuffle_i32x4(c1, c3, 0xdd);
  }
}

// The 16 words at byte `off` of 16 rows (row r at w + r * row_bytes), word j of every row in m[j];
// rows past n_rows and words not in `words` (bit j: word j) are zeros and not read, so a load
// never passes what the caller allows.
GEMMAX_AVX512_WORDS inline void load_words(const uint8_t* w, size_t row_bytes, int n_rows,
                                           size_t off, __mmask16 words, __m512i (&m)[16]) {
  for (int r = 0; r < 16; ++r)
    m[r] = r < n_rows ? _mm512_maskz_loadu_epi32(words, w + r * row_bytes + off)
                      : _mm512_setzero_si512();
  transpose16(m);
}

// (v >> shift) & mask in every byte.
GEMMAX_AVX512_WORDS inline __m512i bytes_of(__m512i v, int shift, int mask) {
  return _mm512_and_si512(_mm512_srli_epi32(v, shift), _mm512_set1_epi8(static_cast<char>(mask)));
}

// The 32-bit word at p (any alignment) in every lane: four activation bytes for vpdpbusd, or two
// int16 for vpdpwssd.
GEMMAX_AVX512_WORDS inline __m512i broadcast_word(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The low and high f16 halves of every word as floats.
GEMMAX_AVX512_WORDS inline __m512 f16_low(__m512i v) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}
GEMMAX_AVX512_WORDS inline __m512 f16_high(__m512i v) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

}  // namespace gemmax::detail
