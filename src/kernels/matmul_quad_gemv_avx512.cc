// Decode GEMVs of Q4_0 and Q5_0x4 with 512-bit registers on AVX512-VBMI CPUs (Intel Ice Lake and
// later, AMD Zen 4; one target for the file, so that every function inlines into the row loop:
// Q5_0x4 alone would need only VNNI), the same bits as the VNNI quad tiles' GEMV (matmul_avx2.cc,
// quad_tiles.inc).
//
// Why: the 256-bit quad tile spends most of its ~40 instructions per row and quad (4 blocks, 128
// weights) gathering its operands: for Q4_0 four 16-byte nibble loads and their unpacks, and the
// four f16 scales one by one through a general-purpose register. Cache-resident it ran ~45 GMAC/s
// on one thread of the Zen 4 host (kernels_bench gemv/Q4_0, ~22 GB/s of weights), below one core's
// share of the memory's read rate (~30 GB/s), so a decode of 4-bit weights was bound by its
// arithmetic whenever the host's memory ran fast.
//
// Here a quad's integer sums take two 512-bit vpdpbusd on [q0 | q1] and [q2 | q3]
// (load_nibble_quad's registers side by side) against the A8Quad activations, which give the same
// exact int32 lane sums as four 256-bit ones (integer adds in any order). Q4_0: a quad is 72
// contiguous bytes, so two 64-byte loads hold it; one vpermt2b lays its nibble bytes out as `first
// | second` and one vpermw picks its four scales. Q5_0x4 is already in that order
// (weight_repack.h): one 64-byte load of nibbles, the fifth bits by one variable shift per register
// pair. The float steps are quad_tile's, in its order: lane l of a row's 8-lane accumulator +=
// float(sum_l - offset_l) * (d_w(l / 2) * d_a(l)), quad after quad, then hsum.
#include <immintrin.h>

#include <array>
#include <cstdint>

#include "kernels/avx512_gcc12_warnings.h"
#include "kernels/matmul_internal.h"
#include "kernels/quant_blocks.h"

#define GEMMAX_VBMI \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni,avx512vbmi")))

namespace gemmax::detail {
namespace {

namespace q4_0 = quant::q4_0;
namespace q5_0x4 = quant::q5_0x4;

constexpr int kStreams = 4;  // rows in flight from distant parts of the range, as the VNNI GEMV

static_assert(q4_0::kD == 0 && q4_0::kQs == 2 && q4_0::kBytes == 18);

// One row's quad as [q0 | q1], [q2 | q3] (unsigned codes) and its four scales as f32.
struct Quad {
  __m512i q01, q23;
  __m128 d4;
};

// Q4_0: byte i of [first | second] is 8 bytes of each block's nibbles in turn, blocks 0-3 (block m:
// d at 18m, nibbles at 18m + 2), their first halves, then their second halves; offsets from 64 on
// come from the second load (b + 8), at index 64 + offset - 8. The scales are words 0, 9, 18, 27.
constexpr std::array<uint8_t, 64> q4_0_nibble_index() {
  std::array<uint8_t, 64> idx{};
  for (int i = 0; i < 64; ++i) {
    const int block = i / 8 % 4, half = i / 32, off = 18 * block + 2 + 8 * half + i % 8;
    idx[i] = static_cast<uint8_t>(off < 64 ? off : 64 + off - 8);
  }
  return idx;
}
alignas(64) constexpr std::array<uint8_t, 64> kQ4_0NibbleIndex = q4_0_nibble_index();

struct Q4_0Quad {
  static constexpr int kBytes = 4 * q4_0::kBytes, kOffsetShift = 1;
  GEMMAX_VBMI Quad load(const uint8_t* b) const {
    const __m512i nibbles = _mm512_load_si512(kQ4_0NibbleIndex.data());
    const __m512i scales =
        _mm512_setr_epi32(0 | 9 << 16, 18 | 27 << 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i lo = _mm512_loadu_si512(b);
    const __m512i fs = _mm512_permutex2var_epi8(lo, nibbles, _mm512_loadu_si512(b + 8));
    return {_mm512_and_si512(fs, low4), _mm512_and_si512(_mm512_srli_epi32(fs, 4), low4),
            _mm_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(scales, lo)))};
  }
};

// Q5_0x4: the nibbles are [first | second] as stored; fifth bits as Q5_0x4::load in matmul_avx2.cc
// (shifts of 4 and 3 for q0 and q1, 2 and 1 for q2 and q3: bit 4 of each byte only ever comes from
// its own byte, so 32-bit shifts give the 16-bit shifts' bits).
struct Q5_0x4Quad {
  static constexpr int kBytes = q5_0x4::kBytes, kOffsetShift = 0;
  GEMMAX_VBMI Quad load(const uint8_t* b) const {
    const __m512i low4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
    const __m512i fs = _mm512_loadu_si512(b + q5_0x4::kQs);
    const __m256i v = _mm256_srlv_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128(
                                            reinterpret_cast<const __m128i*>(b + q5_0x4::kQh))),
                                        _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    const __m512i vv = _mm512_broadcast_i64x4(v);
    const __m512i s01 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m512i s23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i q01 = _mm512_or_si512(_mm512_and_si512(fs, low4),
                                        _mm512_and_si512(_mm512_sllv_epi32(vv, s01), bit4));
    const __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(fs, 4), low4),
                                        _mm512_and_si512(_mm512_sllv_epi32(vv, s23), bit4));
    return {q01, q23,
            _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + q5_0x4::kD)))};
  }
};

// Row r of each of R rows `stride` bytes apart x the one token of `a`, out[r].
template <class F, int R>
GEMMAX_VBMI inline void rows_dot(const F& f, const uint8_t* w, size_t stride, const A8Quad* a,
                                 int64_t quads, float* out) {
  const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    asm("" : "+x"(acc[r]));  // in registers, not a zeroed array (see zero_accumulators)
  }
  for (int64_t g = 0; g < quads; ++g) {
    const __m512i a01 = _mm512_loadu_si512(a[g].q[0]), a23 = _mm512_loadu_si512(a[g].q[2]);
    const __m256i offset = _mm256_srai_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[g].sums16)), F::kOffsetShift);
    const __m256 ad = _mm256_loadu_ps(a[g].d);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = w + r * stride + g * F::kBytes;
      prefetch_ahead(b);
      prefetch_ahead(b + 64);
      const Quad q = f.load(b);
      const __m512i d2 =
          _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q.q01, a01), q.q23, a23);
      const __m256i dot = _mm256_sub_epi32(
          _mm256_add_epi32(_mm512_castsi512_si256(d2), _mm512_extracti64x4_epi64(d2, 1)), offset);
      const __m256 dw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(q.d4), pairs);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, ad), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum8(acc[r]);
}

// The VNNI GEMV's visiting order (rows_from_stream_tile): kStreams equal parts, row r of each in
// turn, then the rows left over one by one.
template <class F>
GEMMAX_VBMI inline void rows_of(const F& f, const uint8_t* w, size_t row_bytes, int64_t n_rows,
                                const void* act, int64_t k, float* y) {
  const auto* a = static_cast<const A8Quad*>(act);
  const int64_t quads = k / 128;
  const int64_t part = n_rows / kStreams;
  const size_t stride = static_cast<size_t>(part) * row_bytes;
  prefetch_stream_heads(w, stride, kStreams);
  for (int64_t r = 0; r < part; ++r) {
    float out[kStreams];
    rows_dot<F, kStreams>(f, w + r * row_bytes, stride, a, quads, out);
    for (int s = 0; s < kStreams; ++s) y[r + s * part] = out[s];
  }
  for (int64_t r = kStreams * part; r < n_rows; ++r)
    rows_dot<F, 1>(f, w + r * row_bytes, row_bytes, a, quads, y + r);
}

}  // namespace

GEMMAX_VBMI void q4_0_rows_vbmi(const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* act,
                                int64_t k, float* y) {
  rows_of(Q4_0Quad(), w, row_bytes, n_rows, act, k, y);
}

GEMMAX_VBMI void q5_0x4_rows_vbmi(const uint8_t* w, size_t row_bytes, int64_t n_rows,
                                  const void* act, int64_t k, float* y) {
  rows_of(Q5_0x4Quad(), w, row_bytes, n_rows, act, k, y);
}

}  // namespace gemmax::detail
