// AVX2 row-dot kernels. Block-quantized weights are never expanded to f32: the activations are
// quantized to int8 once per call (matmul.cc) and each weight block is unpacked to bytes in
// registers and multiplied with _mm256_maddubs_epi16 (u8 x s8 -> s16 pairs), widened with
// _mm256_madd_epi16, and scaled by the product of the two block scales in f32. Every function
// carries a target attribute because the project is compiled without -march flags; matmul.cc only
// calls in here after checking cpu_features().
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu_features.h"
#include "kernels/matmul_internal.h"
#include "kernels/quant_blocks.h"

#define GEMMAX_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

using namespace quant;

// ---- activation quantization (AVX2: it runs once per token and matmul, ~4% of a prefill when it
// was scalar) ----

GEMMAX_AVX2 inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Quantizes n values (a multiple of 32) with one scale d = max|x| / 127 and returns d; q = x / d
// rounded to nearest-even and clamped to [-127, 127] (NaN -> -127, like the scalar rule it
// replaced: max_ps returns its second operand when the first is NaN). sums16[g] = sum of q over
// elements 16g..16g+15 when sums16 is not null.
GEMMAX_AVX2 float quantize_block(const float* x, int n, int8_t* q, int32_t* sums16) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 vmax = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8)
    vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask), vmax);  // NaN ignored
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float d = _mm_cvtss_f32(m) / 127.0f;
  const __m256 inv_d = _mm256_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int i = 0; i < n; i += 32) {
    __m256i v[4];
    for (int j = 0; j < 4; ++j) {
      const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), inv_d);
      v[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(y, lo), hi));
    }
    const __m256i packed =
        _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permutevar8x32_epi32(packed, order));
    if (sums16 != nullptr) {
      sums16[i / 16] = hsum_epi32(_mm256_add_epi32(v[0], v[1]));
      sums16[i / 16 + 1] = hsum_epi32(_mm256_add_epi32(v[2], v[3]));
    }
  }
  return d;
}

GEMMAX_AVX2 void quantize_a8x32(const float* x, int64_t k, A8Block32* out) {
  for (int64_t b = 0; b < k / kQK; ++b) {
    A8Block32& blk = out[b];
    int32_t sums[2];
    blk.d = quantize_block(x + b * kQK, kQK, blk.q, sums);
    blk.sum = blk.d * static_cast<float>(sums[0] + sums[1]);
  }
}

// Four blocks at a time into the A8Quad layout (see matmul_internal.h); missing last blocks are
// zero. The layout is a 4 x 4 transpose of the blocks' 8-byte groups, and sums16 the 4-byte sums
// of its registers (maddubs by ones, then madd): vector work, because a decode step quantizes its
// activations on the calling thread while the others wait (scalar, this took ~5 us of each 1B
// down projection's 170).
GEMMAX_AVX2 void quantize_a8quad(const float* x, int64_t k, A8Quad* out) {
  const int64_t nb = k / kQK;
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int64_t g = 0; g < (nb + 3) / 4; ++g) {
    A8Quad& qd = out[g];
    alignas(32) int8_t q[4][32] = {};
    alignas(32) float d[8] = {};
    for (int m = 0; m < 4 && 4 * g + m < nb; ++m)
      d[2 * m] = d[2 * m + 1] = quantize_block(x + (4 * g + m) * kQK, kQK, q[m], nullptr);
    // Rows m = blocks, 64-bit columns j = element groups 8j..8j+7: transpose so that register j
    // holds group j of blocks 0-3.
    const __m256i r0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(q[0]));
    const __m256i r1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(q[1]));
    const __m256i r2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(q[2]));
    const __m256i r3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(q[3]));
    const __m256i a = _mm256_unpacklo_epi64(r0, r1), b = _mm256_unpackhi_epi64(r0, r1);
    const __m256i c = _mm256_unpacklo_epi64(r2, r3), e = _mm256_unpackhi_epi64(r2, r3);
    const __m256i t[4] = {
        _mm256_permute2x128_si256(a, c, 0x20), _mm256_permute2x128_si256(b, e, 0x20),
        _mm256_permute2x128_si256(a, c, 0x31), _mm256_permute2x128_si256(b, e, 0x31)};
    __m256i sums = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qd.q[j]), t[j]);
      sums = _mm256_add_epi32(sums, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, t[j]), ones16));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qd.sums16), _mm256_slli_epi32(sums, 4));
    _mm256_storeu_ps(qd.d, _mm256_load_ps(d));
  }
}

GEMMAX_AVX2 void quantize_a8x256(const float* x, int64_t k, A8Block256* out) {
  for (int64_t b = 0; b < k / kQKK; ++b) {
    A8Block256& blk = out[b];
    int32_t sums[16];
    blk.d = quantize_block(x + b * kQKK, kQKK, blk.q, sums);
    for (int g = 0; g < 16; ++g) blk.bsums[g] = static_cast<int16_t>(sums[g]);
  }
}

// ---- register helpers ----

// acc[t] = 0 for t < T, each in a register. Left to itself gcc zeroed the 8-token tiles' arrays
// (partly spilled) with a `rep stos` per call, which cost ~10% of a 1 x 8 Q4_0 tile on 640-wide
// rows (5 quads of work per call): kernels_bench prefill64 Q4_0 ~392 -> ~438 MB/s, Q5_0 +8%.
template <int T>
GEMMAX_AVX2 inline void zero_accumulators(__m256 (&acc)[T]) {
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    asm("" : "+x"(acc[t]));
  }
}

GEMMAX_AVX2 inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

GEMMAX_AVX2 inline __m256i loadu(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// Sum of u[i] * s[i] over each group of 8 bytes -> 8 int32 lanes; u unsigned, s signed. The
// pairwise int16 sums cannot saturate for |u| <= 128, |s| <= 127 (2 * 128 * 127 < 32767).
GEMMAX_AVX2 inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0-15) then high nibbles (elements 16-31).
GEMMAX_AVX2 inline __m256i unpack_nibbles_32(const uint8_t* p) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// Byte i = 0xff when bit i of `bits` is set, else 0: broadcast, route byte i/8 to byte i, then OR
// in every bit except bit i%8 so only a set bit i gives all ones.
GEMMAX_AVX2 inline __m256i expand_bits(uint32_t bits) {
  const __m256i route = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                          0x0101010101010101, 0x0000000000000000);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), route);
  const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  return _mm256_cmpeq_epi8(_mm256_or_si256(v, others), _mm256_set1_epi8(-1));
}

// ---- f32 / f16 / bf16 weights with f32 activations ----

// sum_i a[i] * b[i] with four 8-lane accumulators, then the lanes, then a scalar tail.
GEMMAX_AVX2 float dot_f32_avx2(const float* a, const float* b, int64_t k) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    for (int j = 0; j < 4; ++j)
      acc[j] =
          _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * j), _mm256_loadu_ps(b + i + 8 * j), acc[j]);
  }
  for (; i + 8 <= k; i += 8)
    acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc[0]);
  float s = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < k; ++i) s += a[i] * b[i];
  return s;
}

GEMMAX_AVX2 float row_f32(const uint8_t* w, const void* a, int64_t k) {
  return dot_f32_avx2(reinterpret_cast<const float*>(w), static_cast<const float*>(a), k);
}

GEMMAX_AVX2 inline __m256 load8_f16(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

GEMMAX_AVX2 inline __m256 load8_bf16(const uint8_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

template <bool kBf16>
GEMMAX_AVX2 inline __m256 load8_half(const uint8_t* p) {
  return kBf16 ? load8_bf16(p) : load8_f16(p);
}

// 16-bit weights: R rows (row_bytes apart) x T tokens of f32 activations, out[t * ldo + r]. Each
// 8 weights are converted once in registers and used by the T tokens, each 8 activations are
// loaded once (into a register) for the R rows. Every (row, token) pair sees the same operations
// in the same order for any R and T. Two schemes, chosen per matrix (avx2_row_kernel):
//  * short rows (< kTwoChainLength): one FMA chain per pair; prefill tiles of 2 rows x 6 tokens
//    (12 accumulators, 12 FMAs per 8 loads: 35 GMAC/s on one thread). Decode reads one row at a
//    time and the out-of-order core overlaps consecutive rows' chains;
//  * long rows, and matrices of kTwoChainRows rows or more: two chains per pair, the even and the
//    odd groups of 8 (one chain waited on the FMA latency: 4B BF16 decode 3.1 tok/s; splitting
//    rows in halves instead read two streams per row, which the 1B LM head did not like); prefill
//    tiles of 2 rows x 3 tokens keep both chains in the 12 registers. The row count picks out the
//    262144-row LM head: it is read by a GEMV at every decode step and by at most a few tokens in
//    a prefill (only the tokens whose logits are asked for), so the slower 2 x 3 tile costs
//    nothing there, while the 640-wide 270M head went from one chain's 24.5 to 29 GB/s
//    (kernels_bench gemv/BF16/lm_head, 2 threads, 4 interleaved runs each). BF16 layer
//    matrices take this scheme through tile_bf16_pairs (below), F16 and the BF16 LM head
//    through tile_half.
constexpr int64_t kTwoChainLength = 1024;
constexpr int64_t kTwoChainRows = 65536;

template <bool kBf16, bool kTwoChains, int R, int T>
GEMMAX_AVX2 inline void tile_half(const uint8_t* w, size_t row_bytes, const uint8_t* act,
                                  size_t act_stride, int64_t k, float* out, size_t ldo) {
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const float*>(act + t * act_stride);
  const int64_t groups = k / 8;  // whole groups of 8
  // acc += the products of group g for every (row, token) pair.
  const auto step = [&](int64_t g, __m256(&acc)[R][T]) GEMMAX_AVX2 {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* wr = w + r * row_bytes + 16 * g;
      if (g % 4 == 0) prefetch_ahead(wr);  // one 64-byte line per 32 weights
      wv[r] = load8_half<kBf16>(wr);
    }
    for (int t = 0; t < T; ++t) {
      __m256 xv = _mm256_loadu_ps(x[t] + 8 * g);
      if constexpr (R > 1) asm("" : "+x"(xv));  // load once for the R rows, not once per FMA
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  };
  __m256 even[R][T], odd[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) even[r][t] = odd[r][t] = _mm256_setzero_ps();
  int64_t g = 0;
  if constexpr (kTwoChains)
    for (; g + 2 <= groups; g += 2) step(g, even), step(g + 1, odd);
  for (; g < groups; ++g) step(g, even);
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = hsum8(kTwoChains ? _mm256_add_ps(even[r][t], odd[r][t]) : even[r][t]);
      for (int64_t j = 8 * groups; j < k; ++j) {
        uint16_t h;
        std::memcpy(&h, w + r * row_bytes + 2 * j, 2);
        s += (kBf16 ? bf16_to_f32(h) : f16_to_f32(h)) * x[t][j];
      }
      out[t * ldo + r] = s;
    }
  }
}

// BF16 rows with two chains, in pairs: 16 weights are one 32-byte load whose 32-bit words hold
// elements (2j, 2j + 1); a shift left by 16 gives the even elements as f32, a mask of the high half
// the odd ones, so the activations come permuted the same way (ActFormat::kF32Pairs: per 16, the
// even elements then the odd ones). The even chain takes the even elements, the odd chain the odd
// ones. Against load8_bf16 (two 16-byte loads, two widening shuffles, two shifts per 16 weights)
// this is one load, a shift and an AND, and only the shift competes with the FMAs for a port:
// a 2 x 3 tile over 1152-wide rows ran 30.5-38 -> 35-45 GMAC/s on one thread (L1-resident,
// interleaved runs). Elements past the last whole 16 stay in order and are added in scalar code.
// Only the GEMV (T == 1) prefetches: the tiles' weights come from L2, and prefetching 4 KiB ahead
// pulled lines of the next pass into L1 (kernels_bench prefill512/BF16: slower both ways).
//
// A row is summed in spans of kPairSpan elements, each span's two chains reduced to one float and
// added in order, so a prefill may stop after any span and resume (TokensSpanFn): rows longer than
// a few spans (the 1B/4B FFN down projections, 6912 and 10240 wide) then pass over the tokens span
// group by span group with a tile's activations in L1 instead of L2.
template <int R, int T>
GEMMAX_AVX2 inline void tile_bf16_pairs_span(const uint8_t* w, size_t row_bytes, const uint8_t* act,
                                             size_t act_stride, int64_t k0, int64_t k1, int64_t k,
                                             float* out, size_t ldo) {
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const float*>(act + t * act_stride);
  const int64_t vec_end = k / 16 * 16;
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  int64_t c0 = k0;
  do {  // at least once: an empty row (k == 0) still stores its dot, 0
    const int64_t c1 = std::min(k1, c0 + kPairSpan);
    __m256 even[R][T], odd[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) even[r][t] = odd[r][t] = _mm256_setzero_ps();
    for (int64_t j = c0; j < std::min(c1, vec_end); j += 16) {
      __m256i v[R];
      for (int r = 0; r < R; ++r) {
        const uint8_t* wr = w + r * row_bytes + 2 * j;
        if (T == 1 && j % 32 == 0) prefetch_ahead(wr);  // one 64-byte line per 32 weights
        v[r] = loadu(wr);
      }
      __m256 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = _mm256_castsi256_ps(_mm256_slli_epi32(v[r], 16));
      for (int t = 0; t < T; ++t) {
        __m256 xv = _mm256_loadu_ps(x[t] + j);
        if constexpr (R > 1) asm("" : "+x"(xv));  // load once for the R rows
        for (int r = 0; r < R; ++r) even[r][t] = _mm256_fmadd_ps(wv[r], xv, even[r][t]);
      }
      for (int r = 0; r < R; ++r) wv[r] = _mm256_castsi256_ps(_mm256_and_si256(v[r], high));
      for (int t = 0; t < T; ++t) {
        __m256 xv = _mm256_loadu_ps(x[t] + j + 8);
        if constexpr (R > 1) asm("" : "+x"(xv));
        for (int r = 0; r < R; ++r) odd[r][t] = _mm256_fmadd_ps(wv[r], xv, odd[r][t]);
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        float s = hsum8(_mm256_add_ps(even[r][t], odd[r][t]));
        for (int64_t j = std::max(c0, vec_end); j < c1; ++j) {
          uint16_t h;
          std::memcpy(&h, w + r * row_bytes + 2 * j, 2);
          s += bf16_to_f32(h) * x[t][j];
        }
        float& o = out[t * ldo + r];
        o = c0 == 0 ? s : o + s;
      }
    }
    c0 = c1;
  } while (c0 < k1);
}

template <int R, int T>
GEMMAX_AVX2 inline void tile_bf16_pairs(const uint8_t* w, size_t row_bytes, const uint8_t* act,
                                        size_t act_stride, int64_t k, float* out, size_t ldo) {
  tile_bf16_pairs_span<R, T>(w, row_bytes, act, act_stride, 0, k, k, out, ldo);
}

// x in the kF32Pairs order: per 16 elements the 8 even ones, then the 8 odd ones; the rest as is.
GEMMAX_AVX2 void permute_pairs(const float* x, int64_t k, float* out) {
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    // shuffle_ps picks within 128-bit lanes: [a0 a2 b0 b2 | a4 a6 b4 b6]; the 64-bit permute puts
    // the halves in order.
    const __m256 even = _mm256_shuffle_ps(a, b, 0x88), odd = _mm256_shuffle_ps(a, b, 0xdd);
    _mm256_storeu_ps(out + i,
                     _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xd8)));
    _mm256_storeu_ps(out + i + 8,
                     _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), 0xd8)));
  }
  for (; i < k; ++i) out[i] = x[i];
}

// ---- 32-element block formats: *_0 with A8Quad activations, *_1 with A8Block32 ----

// 16 bytes from p0 in the low half of a register, 16 from p1 in the high half.
GEMMAX_AVX2 inline __m256i load_halves(const uint8_t* p0, const uint8_t* p1) {
  return _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1)), 1);
}

// Q4_0, Q5_0 and Q8_0 are processed four blocks at a time against A8Quad activations. Each format
// provides load(b, q): blocks b[0..3] in the A8Quad order. Q4_0 and Q5_0 load their unsigned codes
// (value + 8 or + 16) and the kernel subtracts the offset times the activation sums in int32,
// exactly (A8Quad::sums16 shifted right by kOffsetShift); Q8_0 is signed (kSigned) and uses the
// sign trick.

// The nibbles of four Q4_0/Q5_0-style blocks (element j in the low nibble of byte j, j + 16 in the
// high one) in the A8Quad order: q[0] = elements 0-7 (low nibbles of bytes 0-7), q[1] = 8-15, q[2]
// = 16-23 (high nibbles of bytes 0-7), q[3] = 24-31.
GEMMAX_AVX2 inline void load_nibble_quad(const uint8_t* const qs[4], __m256i* q) {
  const __m256i v02 = load_halves(qs[0], qs[2]), v13 = load_halves(qs[1], qs[3]);
  const __m256i first = _mm256_unpacklo_epi64(v02, v13);   // bytes 0-7 of blocks 0, 1 | 2, 3
  const __m256i second = _mm256_unpackhi_epi64(v02, v13);  // bytes 8-15
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  q[0] = _mm256_and_si256(first, low4);
  q[1] = _mm256_and_si256(second, low4);
  q[2] = _mm256_and_si256(_mm256_srli_epi16(first, 4), low4);
  q[3] = _mm256_and_si256(_mm256_srli_epi16(second, 4), low4);
}

struct Q4_0 {
  static constexpr int kBytes = q4_0::kBytes, kD = q4_0::kD, kOffsetShift = 1;
  static constexpr bool kSigned = false, kInterleaved = false;
  GEMMAX_AVX2 static void load(const uint8_t* const b[4], int /*n*/, __m256i* q) {
    const uint8_t* qs[4] = {b[0] + q4_0::kQs, b[1] + q4_0::kQs, b[2] + q4_0::kQs, b[3] + q4_0::kQs};
    load_nibble_quad(qs, q);
  }
};
struct Q5_0 {
  static constexpr int kBytes = q5_0::kBytes, kD = q5_0::kD, kOffsetShift = 0;
  static constexpr bool kSigned = false, kInterleaved = false;
  GEMMAX_AVX2 static void load(const uint8_t* const b[4], int n, __m256i* q) {
    const uint8_t* qs[4] = {b[0] + q5_0::kQs, b[1] + q5_0::kQs, b[2] + q5_0::kQs, b[3] + q5_0::kQs};
    load_nibble_quad(qs, q);
    // Fifth bits: bit e of a block's qh is element e, so q[j] needs byte j of the four blocks' qh
    // words, each byte spread over the 8 bytes it covers. `words` holds blocks 0 and 2's words at
    // bytes 0-3 of the low and the high half, blocks 1 and 3's at bytes 6-9.
    __m256i words;
    if (n == 4) {
      // A full quad is 88 contiguous bytes: 32-byte loads at the qh of blocks 0 and 2 also hold
      // those of blocks 1 and 3, 22 bytes on (bytes 6-9 of their high halves). Two loads, two
      // lane moves and a blend where four scalar loads and three inserts gathered them.
      const __m256i l01 = loadu(b[0] + q5_0::kQh), l23 = loadu(b[2] + q5_0::kQh);
      words = _mm256_blend_epi16(_mm256_permute2x128_si256(l01, l23, 0x20),
                                 _mm256_permute2x128_si256(l01, l23, 0x31), 0x18);
    } else {  // a last, partial quad: b[] repeats b[0] for the missing blocks
      auto half = [](uint32_t first, uint32_t second) GEMMAX_AVX2 {
        return _mm_setr_epi32(static_cast<int>(first), static_cast<int>(second << 16),
                              static_cast<int>(second >> 16), 0);
      };
      words = _mm256_set_m128i(half(load_u32(b[2] + q5_0::kQh), load_u32(b[3] + q5_0::kQh)),
                               half(load_u32(b[0] + q5_0::kQh), load_u32(b[1] + q5_0::kQh)));
    }
    const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe), bit4 = _mm256_set1_epi8(0x10);
    for (int j = 0; j < 4; ++j) {
      // Bytes 0-7 of each half take byte j of its first block's word, bytes 8-15 byte 6 + j.
      const __m256i route =
          _mm256_setr_epi64x(0x0101010101010101LL * j, 0x0101010101010101LL * (6 + j),
                             0x0101010101010101LL * j, 0x0101010101010101LL * (6 + j));
      const __m256i bits = _mm256_or_si256(_mm256_shuffle_epi8(words, route), others);
      q[j] = _mm256_or_si256(q[j],
                             _mm256_and_si256(_mm256_cmpeq_epi8(bits, _mm256_set1_epi8(-1)), bit4));
    }
  }
};

// Q5_0x4 (the repacked Q5_0, layout in quant_blocks.h): b[0] is the quad, whose 88 bytes the tile
// loop steps over as four 22-byte blocks. Nibbles: two 32-byte loads already in the A8Quad order.
// Fifth bits: one 16-byte load in both halves, the high half shifted to bring blocks 2 and 3's
// bits (bits 4-7 of each byte) down to bits 0-3; bit j of byte p is then group j's fifth bit of
// lane p, moved to bit 4 by a 16-bit shift (bit 4 of each byte comes from bit j of the same byte)
// and masked.
struct Q5_0x4 {
  static constexpr int kBytes = q5_0x4::kBytes / 4, kD = q5_0x4::kD, kOffsetShift = 0;
  static constexpr bool kSigned = false, kInterleaved = true;
  GEMMAX_AVX2 static void load(const uint8_t* const b[4], int /*n*/, __m256i* q) {
    const uint8_t* qs = b[0] + q5_0x4::kQs;
    const __m256i first = loadu(qs), second = loadu(qs + 32), low4 = _mm256_set1_epi8(0x0f);
    q[0] = _mm256_and_si256(first, low4);
    q[1] = _mm256_and_si256(second, low4);
    q[2] = _mm256_and_si256(_mm256_srli_epi16(first, 4), low4);
    q[3] = _mm256_and_si256(_mm256_srli_epi16(second, 4), low4);
    const __m256i v = _mm256_srlv_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128(
                                            reinterpret_cast<const __m128i*>(b[0] + q5_0x4::kQh))),
                                        _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    q[0] = _mm256_or_si256(q[0], _mm256_and_si256(_mm256_slli_epi16(v, 4), bit4));
    q[1] = _mm256_or_si256(q[1], _mm256_and_si256(_mm256_slli_epi16(v, 3), bit4));
    q[2] = _mm256_or_si256(q[2], _mm256_and_si256(_mm256_slli_epi16(v, 2), bit4));
    q[3] = _mm256_or_si256(q[3], _mm256_and_si256(_mm256_slli_epi16(v, 1), bit4));
  }
};

// Q8_0 in the quad order: each block's 32 bytes are four 8-byte groups; q[j] gathers group j of
// the four blocks (a 4x4 transpose of 64-bit lanes). Signed: the kernel uses the sign trick.
struct Q8_0 {
  static constexpr int kBytes = q8_0::kBytes, kD = q8_0::kD, kOffsetShift = 0;
  static constexpr bool kSigned = true, kInterleaved = false;
  GEMMAX_AVX2 static void load(const uint8_t* const b[4], int /*n*/, __m256i* q) {
    const __m256i a0 = loadu(b[0] + q8_0::kQs), a1 = loadu(b[1] + q8_0::kQs);
    const __m256i a2 = loadu(b[2] + q8_0::kQs), a3 = loadu(b[3] + q8_0::kQs);
    const __m256i lo01 = _mm256_unpacklo_epi64(a0, a1), hi01 = _mm256_unpackhi_epi64(a0, a1);
    const __m256i lo23 = _mm256_unpacklo_epi64(a2, a3), hi23 = _mm256_unpackhi_epi64(a2, a3);
    q[0] = _mm256_permute2x128_si256(lo01, lo23, 0x20);
    q[1] = _mm256_permute2x128_si256(hi01, hi23, 0x20);
    q[2] = _mm256_permute2x128_si256(lo01, lo23, 0x31);
    q[3] = _mm256_permute2x128_si256(hi01, hi23, 0x31);
  }
};

// Integer dot products of the quad tiles (quad_tiles.inc): int32 lane l = the sum over the four
// registers of bytes 4l..4l+3 of weights x activations, exact. AVX2: maddubs (u8 x s8 -> int16
// pairs, no saturation in range: see quad_tile) and madd by ones; the signed weights (Q8_0) go
// through the sign trick, |w| x (a with w's sign).
namespace quad_avx2 {

GEMMAX_AVX2 inline __m256i quad_dot_signed(const __m256i (&u)[4], const __m256i (&q)[4],
                                           const A8Quad& a) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i p[4];
  for (int j = 0; j < 4; ++j)
    p[j] =
        _mm256_madd_epi16(_mm256_maddubs_epi16(u[j], _mm256_sign_epi8(loadu(a.q[j]), q[j])), ones);
  return _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3]));
}

GEMMAX_AVX2 inline __m256i quad_dot_unsigned(const __m256i (&q)[4], const A8Quad& a) {
  const __m256i pairs =
      _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(q[0], loadu(a.q[0])),
                                        _mm256_maddubs_epi16(q[1], loadu(a.q[1]))),
                       _mm256_add_epi16(_mm256_maddubs_epi16(q[2], loadu(a.q[2])),
                                        _mm256_maddubs_epi16(q[3], loadu(a.q[3]))));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

#define GEMMAX_QUAD_TARGET GEMMAX_AVX2
#include "kernels/quad_tiles.inc"
#undef GEMMAX_QUAD_TARGET

}  // namespace quad_avx2

// AVX512-VNNI (256-bit, with VL): vpdpbusd adds the four u8 x s8 products of each int32 lane in
// one instruction, where AVX2 takes maddubs + madd (+ adds): the same exact sums, so the same bits.
#define GEMMAX_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))
namespace quad_vnni {

GEMMAX_VNNI inline __m256i quad_dot_signed(const __m256i (&u)[4], const __m256i (&q)[4],
                                           const A8Quad& a) {
  __m256i dot = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j)
    dot = _mm256_dpbusd_epi32(dot, u[j], _mm256_sign_epi8(loadu(a.q[j]), q[j]));
  return dot;
}

GEMMAX_VNNI inline __m256i quad_dot_unsigned(const __m256i (&q)[4], const A8Quad& a) {
  __m256i dot = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) dot = _mm256_dpbusd_epi32(dot, q[j], loadu(a.q[j]));
  return dot;
}

#define GEMMAX_QUAD_TARGET GEMMAX_VNNI
#include "kernels/quad_tiles.inc"
#undef GEMMAX_QUAD_TARGET

}  // namespace quad_vnni

// *_1 formats: sum((d*q + m) * x) = d * dx * sum(q * qx) + m * (dx * sum(qx)).
GEMMAX_AVX2 float row_q4_1(const uint8_t* w, const void* act, int64_t k) {
  const auto* a = static_cast<const A8Block32*>(act);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < k / kQK; ++b, w += q4_1::kBytes) {
    const __m256i p = dot_u8s8(unpack_nibbles_32(w + q4_1::kQs), loadu(a[b].q));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w + q4_1::kD) * a[b].d), _mm256_cvtepi32_ps(p), acc);
    mins += f16(w + q4_1::kM) * a[b].sum;
  }
  return hsum8(acc) + mins;
}

GEMMAX_AVX2 float row_q5_1(const uint8_t* w, const void* act, int64_t k) {
  const auto* a = static_cast<const A8Block32*>(act);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < k / kQK; ++b, w += q5_1::kBytes) {
    const __m256i high =
        _mm256_and_si256(expand_bits(load_u32(w + q5_1::kQh)), _mm256_set1_epi8(0x10));
    const __m256i q = _mm256_or_si256(unpack_nibbles_32(w + q5_1::kQs), high);
    const __m256i p = dot_u8s8(q, loadu(a[b].q));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w + q5_1::kD) * a[b].d), _mm256_cvtepi32_ps(p), acc);
    mins += f16(w + q5_1::kM) * a[b].sum;
  }
  return hsum8(acc) + mins;
}

// ---- K formats with A8Block256 activations ----

// The eight 6-bit scales and mins of a Q4_K/Q5_K block, unpacked from their 12 bytes with word
// operations (the same rule as quant::k_scale_min): per row and block instead of per sub-block
// and token. `scales` holds scale j as int16 at lane j of both 128-bit halves, so
// sub_block_scale() spreads one over a register with a byte shuffle (set1 from a byte in memory
// took three operations per sub-block, a third of a GEMV's vector work). `mins` holds min_j twice,
// as int16, at lanes 2j and 2j+1, to multiply the activations' 16-element sums
// (A8Block256::bsums) pairwise.
struct KScales {
  __m256i scales;
  __m256i mins;
};

GEMMAX_AVX2 inline KScales unpack_k_scales(const uint8_t* q) {
  const KScaleBytes k = k_scale_bytes(q);
  const __m128i sc8 =
      _mm_set_epi32(0, 0, static_cast<int>(k.scales_hi), static_cast<int>(k.scales_lo));
  const __m128i m8 = _mm_set_epi32(0, 0, static_cast<int>(k.mins_hi), static_cast<int>(k.mins_lo));
  const __m128i twice = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  return {_mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8)),
          _mm256_cvtepu8_epi16(_mm_shuffle_epi8(m8, twice))};
}

// Lane i of `words` (int16, the same in both halves), in all 16 lanes of a register.
template <int I>
GEMMAX_AVX2 inline __m256i spread_word(__m256i words) {
  static_assert(I >= 0 && I < 8);
  return _mm256_shuffle_epi8(words,
                             _mm256_set1_epi16(static_cast<int16_t>((2 * I + 1) << 8 | 2 * I)));
}

// The K formats' dot products are defined super-block by super-block, so that every kernel gives
// the same bits however it lays out its integer sums: from acc = 0, for each super-block in order,
//   acc = fma(float(S), d * dx, acc), then acc = fnmadd(float(M), dmin * dx, acc)   (Q4_K/Q5_K)
//   acc = fma(float(S - 32 * O), d * dx, acc)                                       (Q6_K)
// where S (the scaled q x qx sum), M (mins x sums of qx) and O (the Q6_K offset term) are the
// super-block's exact int32 sums. The AVX2 kernels below keep a token's S and M in 8 lanes and
// add the lanes per super-block; the AVX-512 VNNI panels (matmul_kpanels_avx512.cc) keep one row
// per lane. Every kernel streams a row's blocks front to back.

// Lane t of the result = the sum of the 8 lanes of v[t] (exact int32 additions).
GEMMAX_AVX2 inline __m256i sum_lanes8(const __m256i* v) {
  const __m256i h0 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  const __m256i h1 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
  // h0 = [lanes 0-3 of v0..v3 | lanes 4-7 of v0..v3], h1 the same for v4..v7.
  return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20),
                          _mm256_permute2x128_si256(h0, h1, 0x31));
}

// Q4_K/Q5_K: S = sum over sub-blocks j of sc_j * sum(q*qx), M = sum_j m_j * sum(qx). The int16
// pair sums are at most 2 * 31 * 127 and the 6-bit scales multiply them in _mm256_madd_epi16
// (int32). T tokens share each unpacked weight block (prefill).
template <bool kFifthBit>
struct Q45K {
  static constexpr int kBytes = kFifthBit ? q5_k::kBytes : q4_k::kBytes;
  static constexpr bool kMins = true;

  // s[t], m[t]: token t's S and M of block w, spread over 8 lanes.
  template <int T>
  GEMMAX_AVX2 static void sums(const uint8_t* w, const A8Block256* const (&a)[T], __m256i (&s)[T],
                               __m256i (&m)[T]) {
    constexpr int kQs = kFifthBit ? q5_k::kQs : q4_k::kQs;
    const __m256i low4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    const KScales ks = unpack_k_scales(w + q4_k::kScales);  // same offset in Q5_K
    for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_si256();
    const __m256i qh = kFifthBit ? loadu(w + q5_k::kQh) : _mm256_setzero_si256();
    const __m256i sub_scales[8] = {spread_word<0>(ks.scales), spread_word<1>(ks.scales),
                                   spread_word<2>(ks.scales), spread_word<3>(ks.scales),
                                   spread_word<4>(ks.scales), spread_word<5>(ks.scales),
                                   spread_word<6>(ks.scales), spread_word<7>(ks.scales)};
    for (int c = 0; c < 4; ++c) {  // 64 elements: sub-blocks 2c (low nibbles) and 2c+1 (high)
      const __m256i qs = loadu(w + kQs + 32 * c);
      __m256i lo = _mm256_and_si256(qs, low4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), low4);
      if constexpr (kFifthBit) {
        lo = _mm256_or_si256(
            lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
        hi = _mm256_or_si256(
            hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
      }
      const __m256i s_lo = sub_scales[2 * c], s_hi = sub_scales[2 * c + 1];
      for (int t = 0; t < T; ++t) {
        const __m256i p_lo = _mm256_maddubs_epi16(lo, loadu(a[t]->q + 64 * c));
        const __m256i p_hi = _mm256_maddubs_epi16(hi, loadu(a[t]->q + 64 * c + 32));
        s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(p_lo, s_lo));
        s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(p_hi, s_hi));
      }
    }
    // Lane pairs: m_j x the sums of sub-block j's two 16-element halves.
    for (int t = 0; t < T; ++t) m[t] = _mm256_madd_epi16(ks.mins, loadu(a[t]->bsums));
  }
};

// Shuffle control: int16 lane j of each half to all lanes of the low half, lane j + 1 to all lanes
// of the high half.
GEMMAX_AVX2 inline __m256i pair_spread(int j) {
  const auto lo = static_cast<int16_t>((2 * j + 1) << 8 | 2 * j);
  const auto hi = static_cast<int16_t>((2 * j + 3) << 8 | (2 * j + 2));
  return _mm256_setr_epi16(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi);
}

// Q6_K: 6-bit q in 0..63 (offset 32), int8 scale per 16 elements. sum((q-32)*qx*sc) =
// sum(q*qx*sc) - 32 * sum_g(sc_g * bsum_g). Pair sums <= 2*63*127 fit int16.
struct Q6K {
  static constexpr int kBytes = q6_k::kBytes;
  static constexpr bool kMins = false;

  // s[t]: token t's S - 32 * O of block w, spread over 8 lanes (m is not used).
  template <int T>
  GEMMAX_AVX2 static void sums(const uint8_t* w, const A8Block256* const (&a)[T], __m256i (&s)[T],
                               __m256i (&/*m*/)[T]) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), two_bits = _mm256_set1_epi8(3);
    // The 16 int8 scales as int16; half h (scales 8h..8h+7) in both 128-bit halves, so one byte
    // shuffle spreads scale g over the low half and g + 1 over the high half (set1 of two bytes
    // from memory took ~7 operations per 32 elements).
    const __m256i sc16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + q6_k::kScales)));
    const __m256i sc_half[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00),
                                _mm256_permute2x128_si256(sc16, sc16, 0x11)};
    for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql[2] = {loadu(w + q6_k::kQl + 64 * h), loadu(w + q6_k::kQl + 64 * h + 32)};
      const __m256i qh = loadu(w + q6_k::kQh + 32 * h);
      for (int g = 0; g < 4; ++g) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(ql[g % 2], 4 * (g / 2)), low4);
        const __m256i hi =
            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), two_bits), 4);
        const __m256i q = _mm256_or_si256(lo, hi);
        // Scale groups 8h + 2g (the first 16 elements) and 8h + 2g + 1.
        const __m256i scales = _mm256_shuffle_epi8(sc_half[h], pair_spread(2 * g));
        for (int t = 0; t < T; ++t) {
          const __m256i p = _mm256_maddubs_epi16(q, loadu(a[t]->q + 128 * h + 32 * g));
          s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(p, scales));
        }
      }
    }
    // The offset term shares the scale d * dx, so it is subtracted in int32, lane by lane (|S|
    // <= 256 * 63 * 127 * 128 < 2^29, 32 * |O| <= 32 * 16 * 128 * 16 * 127 < 2^28).
    for (int t = 0; t < T; ++t) {
      const __m256i off = _mm256_madd_epi16(sc16, loadu(a[t]->bsums));
      s[t] = _mm256_sub_epi32(s[t], _mm256_slli_epi32(off, 5));
    }
  }
};

// The K blocks' f16 scales (Q4_K/Q5_K d and dmin, Q6_K d): the same offsets in Q4_K and Q5_K.
template <class F>
GEMMAX_AVX2 inline float k_d(const uint8_t* w) {
  return f16(w + (F::kMins ? q4_k::kD : q6_k::kD));
}
GEMMAX_AVX2 inline float k_dmin(const uint8_t* w) { return f16(w + q4_k::kDmin); }

// 1 row x T = 1 or 8 tokens: lane t of acc is token t's accumulator, updated once per super-block.
template <class F, int T>
GEMMAX_AVX2 inline void tile_k(const uint8_t* w, size_t /*row_bytes*/, const uint8_t* act,
                               size_t act_stride, int64_t k, float* out, size_t ldo) {
  static_assert(T == 1 || T == 8);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / kQKK; ++b, w += F::kBytes) {
    prefetch_ahead(w, F::kBytes);
    const A8Block256* a[T];
    for (int t = 0; t < T; ++t)
      a[t] = reinterpret_cast<const A8Block256*>(act + t * act_stride) + b;
    __m256i s[T], m[T];
    F::template sums<T>(w, a, s, m);
    const float d = k_d<F>(w);
    if constexpr (T == 1) {
      // Both sums at once: lanes 0 and 1 of f = S and M.
      __m256i h = _mm256_hadd_epi32(s[0], F::kMins ? m[0] : s[0]);
      __m128i sm = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      const __m128 f = _mm_cvtepi32_ps(_mm_hadd_epi32(sm, sm));
      const float dx = a[0]->d;
      __m128 lo = _mm256_castps256_ps128(acc);
      lo = _mm_fmadd_ss(f, _mm_set_ss(d * dx), lo);
      if constexpr (F::kMins)
        lo = _mm_fnmadd_ss(_mm_movehdup_ps(f), _mm_set_ss(k_dmin(w) * dx), lo);
      acc = _mm256_castps128_ps256(lo);
    } else {
      const __m256 dx =
          _mm256_setr_ps(a[0]->d, a[1]->d, a[2]->d, a[3]->d, a[4]->d, a[5]->d, a[6]->d, a[7]->d);
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_lanes8(s)), _mm256_mul_ps(_mm256_set1_ps(d), dx),
                            acc);
      if constexpr (F::kMins)
        acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(sum_lanes8(m)),
                               _mm256_mul_ps(_mm256_set1_ps(k_dmin(w)), dx), acc);
    }
  }
  if constexpr (T == 1) {
    out[0] = _mm256_cvtss_f32(acc);
  } else {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (int t = 0; t < T; ++t) out[t * ldo] = lanes[t];
  }
}

// GEMV: groups of 8 rows, one from each of 8 equal parts of the range (8 distant streams, like the
// quad formats' 4), with the float updates of the 8 at once (lane i = the row of part i, as in the
// 8-token tile): the integer sums of each block are kept in L1 until the group's rows are done.
// Adding the lanes and updating one row at a time (tile_k<F, 1>) cost ~8% of a 4B Q4_K_M decode.
// The sums go block by block, block b of each of the 8 rows in turn (session 16): rows taken one
// after another kept one stream in the out-of-order window at a time, and the 8 rows of a group
// used to be adjacent. Stand-alone, 2 threads, ~600 MB of 4B-shaped matrices: Q4_K 22-23 ->
// 25-28 GB/s, Q6_K 21-23 -> 27-30; whole 4B Q4_K_M decode 7.95-8.15 -> 9.8-10.0 tok/s
// (interleaved). The same block-by-block order over 8 *adjacent* rows fell to 13-18 GB/s.
// Super-blocks go in chunks of kChunk (rows longer than that go chunk by chunk).
// kVnniSums: the integer sums come from the AVX-512 VNNI builds (q4_k_group_sums_avx512,
// q5_k_..., q6_k_...) instead of F::sums: the same sums, so the same bits.
template <class F, bool kVnniSums = false>
GEMMAX_AVX2 void rows_k(const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* act,
                        int64_t k, float* y) {
  constexpr int64_t kChunk = 48, kGroup = 8;
  const auto* a = static_cast<const A8Block256*>(act);
  const int64_t nsb = k / kQKK;
  const int64_t part = n_rows / kGroup;
  const size_t stride = static_cast<size_t>(part) * row_bytes;
  for (int64_t j = 0; j < part; ++j) {
    const uint8_t* first = w + j * row_bytes;  // row j of part 0; part i's is i * stride further
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < nsb; b0 += kChunk) {
      const int64_t nb = std::min(kChunk, nsb - b0);
      __m256i s[kChunk][kGroup], m[kChunk][F::kMins ? kGroup : 1];
      alignas(16) uint16_t d[kChunk][kGroup], dmin[kChunk][F::kMins ? kGroup : 1];
      if constexpr (kVnniSums) {
        const KGroupSumsFn sums = !F::kMins                   ? q6_k_group_sums_avx512
                                  : F::kBytes == q5_k::kBytes ? q5_k_group_sums_avx512
                                                              : q4_k_group_sums_avx512;
        sums(first + b0 * F::kBytes, stride, a + b0, nb, &s[0][0], &m[0][0], &d[0][0], &dmin[0][0]);
      } else {
        for (int64_t b = 0; b < nb; ++b)
          for (int i = 0; i < kGroup; ++i) {
            const uint8_t* block = first + i * stride + (b0 + b) * F::kBytes;
            prefetch_ahead(block, F::kBytes);
            const A8Block256* ab[1] = {a + b0 + b};
            __m256i sb[1], mb[1];
            F::template sums<1>(block, ab, sb, mb);
            s[b][i] = sb[0];
            d[b][i] = load_u16(block + (F::kMins ? q4_k::kD : q6_k::kD));
            if constexpr (F::kMins) {
              m[b][i] = mb[0];
              dmin[b][i] = load_u16(block + q4_k::kDmin);
            }
          }
      }
      for (int64_t b = 0; b < nb; ++b) {
        const __m256 dx = _mm256_set1_ps(a[b0 + b].d);
        const __m256 db = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d[b])));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_lanes8(s[b])), _mm256_mul_ps(db, dx), acc);
        if constexpr (F::kMins) {
          const __m256 dm =
              _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dmin[b])));
          acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(sum_lanes8(m[b])), _mm256_mul_ps(dm, dx), acc);
        }
      }
    }
    alignas(32) float out[kGroup];
    _mm256_store_ps(out, acc);
    for (int i = 0; i < kGroup; ++i) y[j + i * part] = out[i];
  }
  for (int64_t r = kGroup * part; r < n_rows; ++r)
    tile_k<F, 1>(w + r * row_bytes, row_bytes, static_cast<const uint8_t*>(act), 0, k, y + r, 0);
}

// ---- entry points ----

// A format's single-token dot, row-range GEMV and prefill tiles, all from its tile kernel
// Tile<R, T>(w, row_bytes, act, act_stride, k, out, ldo): R weight rows x T tokens, out[t * ldo +
// r].
// Every (row, token) pair goes through the same operations whatever R and T are, so they agree bit
// for bit.
using TileFn = void (*)(const uint8_t*, size_t, const uint8_t*, size_t, int64_t, float*, size_t);

template <TileFn Tile11>
GEMMAX_AVX2 float row_from_tile(const uint8_t* w, const void* act, int64_t k) {
  float out = 0.0f;
  Tile11(w, 0, static_cast<const uint8_t*>(act), 0, k, &out, 0);
  return out;
}

// GEMV: one row at a time, the range's rows taken from kRowStreams equal parts in turn (row r of
// part 0, row r of part 1, ...), so a thread reads kRowStreams sequential streams at distant
// addresses. One core's DRAM read rate depends on how many lines it has in flight: the out-of-order
// window of a GEMV covers only ~1.5 KiB of weights, and the L2's hardware prefetcher keeps a
// bounded distance per stream, so more streams put more lines in flight. Whole decodes
// (bench, 2 threads, interleaved, Intel AVX-512 host): 1B Q8_0 21.1 -> 23.5-24.2 tok/s, 1B Q4_0
// 37.3 -> 42.2; 3 and 4 streams measured 1-3% above 2. The K formats' GEMV (rows_k) did not gain
// (4B Q4_K_M 7.5-7.9 -> 7.3-7.6) while it still took each row whole; taking 8 streams block by
// block did (session 16, see rows_k). Each row's result is the same as before, only the order in
// which rows are visited changes. Reading two *adjacent* rows side by side (two FMA chains) had
// slowed the DRAM-streamed matrices (LM head Q8_0 28 -> 18 GB/s, BF16 27 -> 21).
constexpr int64_t kRowStreams = 4;

template <TileFn Tile11>
GEMMAX_AVX2 void rows_from_tile(const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* act,
                                int64_t k, float* y) {
  const auto* a = static_cast<const uint8_t*>(act);
  const auto row = [&](int64_t r)
                       GEMMAX_AVX2 { Tile11(w + r * row_bytes, row_bytes, a, 0, k, y + r, 0); };
  const int64_t part = n_rows / kRowStreams;
  prefetch_stream_heads(w, static_cast<size_t>(part) * row_bytes, kRowStreams);
  for (int64_t r = 0; r < part; ++r)
    for (int64_t s = 0; s < kRowStreams; ++s) row(r + s * part);
  for (int64_t r = kRowStreams * part; r < n_rows; ++r) row(r);
}

// The same visiting order, with the streams taken two at a time by a 2-row tile: Tile21 gets the
// distance between two streams as its row stride, so rows r and r + part share one loop. For
// kernels bound by a chain's latency, not by their port count (BF16), the two rows' chains overlap;
// each row's result is still bit for bit Tile11's.
template <TileFn Tile11, TileFn Tile21>
GEMMAX_AVX2 void rows_from_tile_pairs(const uint8_t* w, size_t row_bytes, int64_t n_rows,
                                      const void* act, int64_t k, float* y) {
  static_assert(kRowStreams % 2 == 0);
  const auto* a = static_cast<const uint8_t*>(act);
  const int64_t part = n_rows / kRowStreams;
  const size_t stride = static_cast<size_t>(part) * row_bytes;
  prefetch_stream_heads(w, stride, kRowStreams);
  for (int64_t r = 0; r < part; ++r) {
    for (int64_t s = 0; s < kRowStreams; s += 2) {
      float out[2];
      Tile21(w + (r + s * part) * row_bytes, stride, a, 0, k, out, 0);
      y[r + s * part] = out[0];
      y[r + (s + 1) * part] = out[1];
    }
  }
  for (int64_t r = kRowStreams * part; r < n_rows; ++r)
    Tile11(w + r * row_bytes, row_bytes, a, 0, k, y + r, 0);
}

// The same visiting order with all kRowStreams streams in one tile: TileS gets the distance between
// the streams as its row stride, so row r of every stream is computed in one pass, quad by quad
// (session 16, the quad formats). One row at a time left a long row's single FMA chain and its
// lines from one stream in the out-of-order window; the 1B's 6912-wide Q4_0 down projection
// streamed 21-22 GB/s against 28 for its 1152-wide gate/up (stand-alone, 2 threads, ~900 MB of
// matrices), though the same loads alone ran alike. In one tile: 6912-wide 28.5-29.3, 1152-wide
// 28.7-29.8 GB/s (Q8_0 16-26 -> 29.3-29.5); whole decodes (2 threads, interleaved) 1B Q4_0
// 38-41 -> 45.6-47.5 tok/s, 1B Q8_0 16.4-16.6 -> 17.6-17.9, 270M Q4_0 186-189 -> 200-203, and on
// the AVX2 (non-VNNI) build 1B Q4_0 40.2-40.5 -> 45.1-45.6. BF16 pairs taken 4 streams at a time
// the same way measured within noise (1B BF16 12.8-13.7 tok/s both).
template <TileFn Tile11, TileFn TileS>
GEMMAX_AVX2 void rows_from_stream_tile(const uint8_t* w, size_t row_bytes, int64_t n_rows,
                                       const void* act, int64_t k, float* y) {
  const auto* a = static_cast<const uint8_t*>(act);
  const int64_t part = n_rows / kRowStreams;
  const size_t stride = static_cast<size_t>(part) * row_bytes;
  prefetch_stream_heads(w, stride, kRowStreams);
  for (int64_t r = 0; r < part; ++r) {
    float out[kRowStreams];
    TileS(w + r * row_bytes, stride, a, 0, k, out, 0);
    for (int64_t s = 0; s < kRowStreams; ++s) y[r + s * part] = out[s];
  }
  for (int64_t r = kRowStreams * part; r < n_rows; ++r)
    Tile11(w + r * row_bytes, row_bytes, a, 0, k, y + r, 0);
}

// Decode: 1 row x 1 token; prefill: R rows x N tokens, and 1 row x N for leftover rows.
template <ActFormat A, int R, int N, TileFn Tile11, TileFn Tile1N, TileFn TileRN>
RowKernel tiled_kernel() {
  static_assert(N > 1 && N <= kMaxTileTokens && R >= 1 && R <= kMaxTileRows);
  return {A, row_from_tile<Tile11>, TileRN, Tile1N, R, N, rows_from_tile<Tile11>};
}

// One-row tiles (the integer formats: their unpacking is shared over tokens, not rows).
template <ActFormat A, int N, TileFn Tile1, TileFn TileN>
RowKernel row_tiled_kernel() {
  return tiled_kernel<A, 1, N, Tile1, TileN, TileN>();
}

// Outside half_kernel: gcc 12 does not instantiate a non-dependent function template named only
// as a template argument inside another template ("used but never defined").
RowKernel bf16_pairs_kernel() {
  RowKernel kn = tiled_kernel<ActFormat::kF32Pairs, 2, 3, tile_bf16_pairs<1, 1>,
                              tile_bf16_pairs<1, 3>, tile_bf16_pairs<2, 3>>();
  kn.span = kPairSpan;
  kn.tokens_span = tile_bf16_pairs_span<2, 3>;
  kn.tokens_span_1row = tile_bf16_pairs_span<1, 3>;
  kn.panel = PanelScheme::kPairs16;
  kn.panel_wide = cpu_features().avx512f;
  kn.rows = rows_from_tile_pairs<tile_bf16_pairs<1, 1>, tile_bf16_pairs<2, 1>>;
  return kn;
}

// The quad formats' tiles, on VNNI where the CPU has it (same bits as AVX2).
template <class F>
RowKernel quad_kernel(DType t, int64_t cols, bool vnni) {
  if (vnni) {
    RowKernel kn = row_tiled_kernel<ActFormat::kA8Quad, 8, quad_vnni::tile_quads<F, 1>,
                                    quad_vnni::tile_quads<F, 8>>();
    // Below 32 tokens the tiles win: whole prefills, interleaved, panels against tiles: 1B Q8_0
    // 16 tokens 137 -> 119 tok/s, 32 tokens 158 -> 177, 512 tokens 160 -> 238; 270M Q4_0 16 tokens
    // -12-30%, 32 tokens +5%; 1B Q4_K_M (mostly Q5_0x4) 16 tokens -9%, 32 tokens +9%.
    kn.kpanel = quad_panel_function(t);
    kn.kpanel_min_tokens = 32;
    kn.rows = rows_from_stream_tile<quad_vnni::tile_quads<F, 1>,
                                    quad_vnni::tile_quads_streams<F, kRowStreams>>;
    // Rows of whole quads: the 512-bit GEMVs (matmul_quad_gemv_avx512.cc), the same bits.
    if constexpr (std::is_same_v<F, Q4_0>)
      if (cpu_features().has_avx512_vbmi() && cols % (4 * kQK) == 0) kn.rows = q4_0_rows_vbmi;
    if constexpr (std::is_same_v<F, Q5_0x4>)
      if (cpu_features().has_avx512_vbmi()) kn.rows = q5_0x4_rows_vbmi;
    return kn;
  }
  RowKernel kn = row_tiled_kernel<ActFormat::kA8Quad, 8, quad_avx2::tile_quads<F, 1>,
                                  quad_avx2::tile_quads<F, 8>>();
  kn.rows = rows_from_stream_tile<quad_avx2::tile_quads<F, 1>,
                                  quad_avx2::tile_quads_streams<F, kRowStreams>>;
  return kn;
}

// The K formats' tiles and GEMV, with their VNNI panel GEMM for prefills where the CPU has VNNI.
template <class F>
RowKernel k_kernel(DType t, bool vnni) {
  RowKernel kn = row_tiled_kernel<ActFormat::kA8x256, 8, tile_k<F, 1>, tile_k<F, 8>>();
  kn.rows = rows_k<F>;
  if (vnni) kn.rows = rows_k<F, true>;
  // The K panels pay from few tokens: their packing is cheap next to the AVX2 tiles' unpacking,
  // and below 8 tokens there is no tile at all (a GEMV per token). Whole prefills, interleaved,
  // panels against none: 4B Q4_K_M 4 tokens 13 -> 19-21 tok/s, 8 tokens 25.5 -> 32.5, 16 tokens
  // 26.5 -> 53; 270M Q4_K_M 4 tokens +4-13%, 2 tokens -2-4% (hence 4).
  if (vnni) {
    kn.kpanel = kpanel_function(t);
    kn.kpanel_min_tokens = 4;
  }
  return kn;
}

// BF16 by vdpbf16ps: a GEMV for one token, the packed panels for more (no row tiles).
RowKernel bf16_dot_kernel() {
  RowKernel kn{ActFormat::kBF16, bf16_dot_row()};
  kn.rows = bf16_dot_rows();
  kn.panel = PanelScheme::kDot32;
  kn.panel_wide = true;
  return kn;
}

template <bool kBf16>
RowKernel half_kernel(int64_t cols, int64_t rows, bool bf16_dot) {
  if constexpr (kBf16)
    if (bf16_dot && cols % 32 == 0) return bf16_dot_kernel();
  if (cols >= kTwoChainLength || rows >= kTwoChainRows) {
    // The LM head keeps tile_half: its prefill tiles see at most a few tokens, and its GEMV, the
    // largest stream of a small model's decode step, measured ~6% slower in pairs inside a
    // 270M BF16 decode (8 of 8 interleaved runs) though not alone.
    if constexpr (kBf16)
      if (rows < kTwoChainRows) return bf16_pairs_kernel();
    RowKernel head = tiled_kernel<ActFormat::kF32, 2, 3, tile_half<kBf16, true, 1, 1>,
                                  tile_half<kBf16, true, 1, 3>, tile_half<kBf16, true, 2, 3>>();
    head.rows = rows_from_tile_pairs<tile_half<kBf16, true, 1, 1>, tile_half<kBf16, true, 2, 1>>;
    if (!kBf16 && rows < kTwoChainRows) {  // F16 layer matrices: panels of the two chains
      head.panel = PanelScheme::kGroups16;
      head.panel_wide = cpu_features().avx512f;
      head.panel_f16 = true;
    }
    return head;
  }
  RowKernel kn = tiled_kernel<ActFormat::kF32, 2, 6, tile_half<kBf16, false, 1, 1>,
                              tile_half<kBf16, false, 1, 6>, tile_half<kBf16, false, 2, 6>>();
  kn.rows = rows_from_tile_pairs<tile_half<kBf16, false, 1, 1>, tile_half<kBf16, false, 2, 1>>;
  kn.panel = PanelScheme::kChain8;
  kn.panel_wide = cpu_features().avx512f;
  kn.panel_f16 = !kBf16;
  return kn;
}

}  // namespace

float avx2_dot_f32(const float* a, const float* b, int64_t k) { return dot_f32_avx2(a, b, k); }

RowKernel avx2_row_kernel(DType t, int64_t cols, int64_t rows) {
  return avx2_row_kernel(t, cols, rows, cpu_features().has_avx512_vnni());
}

RowKernel avx2_row_kernel(DType t, int64_t cols, int64_t rows, bool vnni) {
  return avx2_row_kernel(t, cols, rows, vnni, cpu_features().has_avx512_bf16());
}

RowKernel avx2_row_kernel(DType t, int64_t cols, int64_t rows, bool vnni, bool bf16_dot) {
  switch (t) {
    case DType::kF32:
      return {ActFormat::kF32, row_f32};
    case DType::kF16:
      return half_kernel<false>(cols, rows, false);
    case DType::kBF16:
      return half_kernel<true>(cols, rows, bf16_dot);
    case DType::kQ4_0:
      return quad_kernel<Q4_0>(t, cols, vnni);
    case DType::kQ4_1:
      return {ActFormat::kA8x32, row_q4_1};
    case DType::kQ5_0:
      return quad_kernel<Q5_0>(t, cols, vnni);
    case DType::kQ5_1:
      return {ActFormat::kA8x32, row_q5_1};
    case DType::kQ8_0:
      return quad_kernel<Q8_0>(t, cols, vnni);
    case DType::kQ5_0x4:
      return quad_kernel<Q5_0x4>(t, cols, vnni);
    case DType::kQ4_K:
      return k_kernel<Q45K<false>>(t, vnni);
    case DType::kQ5_K:
      return k_kernel<Q45K<true>>(t, vnni);
    case DType::kQ6_K:
      return k_kernel<Q6K>(t, vnni);
    default:
      return {};  // Q2_K/Q3_K: dequantize per row + avx2_dot_f32
  }
}

size_t act_row_bytes(ActFormat f, int64_t k) {
  switch (f) {
    case ActFormat::kA8x32:
      return static_cast<size_t>(k / kQK) * sizeof(A8Block32);
    case ActFormat::kA8x256:
      return static_cast<size_t>(k / kQKK) * sizeof(A8Block256);
    case ActFormat::kA8Quad:
      return static_cast<size_t>((k / kQK + 3) / 4) * sizeof(A8Quad);
    case ActFormat::kBF16:
      return static_cast<size_t>(k) * 2;
    case ActFormat::kF32:
    case ActFormat::kF32Pairs:
      break;
  }
  return static_cast<size_t>(k) * sizeof(float);
}

void quantize_act_row(ActFormat f, const float* x, int64_t k, void* out) {
  if (f == ActFormat::kA8x32) {
    quantize_a8x32(x, k, static_cast<A8Block32*>(out));
  } else if (f == ActFormat::kA8x256) {
    quantize_a8x256(x, k, static_cast<A8Block256*>(out));
  } else if (f == ActFormat::kA8Quad) {
    quantize_a8quad(x, k, static_cast<A8Quad*>(out));
  } else if (f == ActFormat::kF32Pairs) {
    permute_pairs(x, k, static_cast<float*>(out));
  } else if (f == ActFormat::kBF16) {
    bf16_act_row(x, k, out);
  } else {
    std::memcpy(out, x, static_cast<size_t>(k) * sizeof(float));
  }
}

}  // namespace gemmax::detail
