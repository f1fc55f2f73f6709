// AVX2 versions of the elementwise kernels that cost real time: the gated GELU of every MLP (a
// libm tanh per element was ~10% of a prefill) and the softmax / weighted sum of attention. They
// use one exp approximation accurate to a few ulp, so they match the scalar path within the
// tolerances of tests/kernels/elementwise_test.cc. Compiled with a target attribute like
// matmul_avx2.cc; elementwise.cc only calls in after checking the kernel path.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/elementwise_internal.h"
#include "tensor/half.h"

#define GEMMAX_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace gemmax::detail {
namespace {

GEMMAX_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 2^e for integral e in [-126, 127], built in the exponent bits.
GEMMAX_AVX2 inline __m256 pow2_ps(__m256 e) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(e), _mm256_set1_epi32(127)), 23));
}

// e^x for x in [-87.3, 88.7] (larger inputs are clamped, smaller ones give 0): x = n ln2
// + r with |r| <= ln2/2 (ln2 split in two parts so r is exact to f32), e^r by a degree-6 Taylor
// polynomial (error < 2e-8 relative on that interval), times 2^n built in the exponent bits.
GEMMAX_AVX2 inline __m256 exp_ps(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);  // e^x -> 0
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // n is in [-126, 128]: 2^n as (n + 127) << 23; n = 128 (x near 88.7) is done as 2 * 2^127.
  const __m256 half_n = _mm256_mul_ps(n, _mm256_set1_ps(0.5f));
  const __m256 n1 = _mm256_floor_ps(half_n), n2 = _mm256_sub_ps(n, n1);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(_mm256_mul_ps(p, pow2_ps(n1)), pow2_ps(n2)));
}

// gelu_tanh(g) = 0.5 g (1 + tanh(u)) = g / (1 + e^(-2u)), u = sqrt(2/pi) (g + 0.044715 g^3).
GEMMAX_AVX2 inline __m256 gelu_tanh_ps(__m256 g) {
  const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                 _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
  const __m256 e = exp_ps(_mm256_mul_ps(u, _mm256_set1_ps(-2.0f)));
  return _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

}  // namespace

GEMMAX_AVX2 void gelu_tanh_gated_avx2(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(
        out + i, _mm256_mul_ps(gelu_tanh_ps(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
  if (i < n) {  // the tail through the same vector code, so every element sees the same formula
    float g[8] = {}, u[8] = {}, o[8];
    for (int64_t j = i; j < n; ++j) g[j - i] = gate[j], u[j - i] = up[j];
    _mm256_storeu_ps(o, _mm256_mul_ps(gelu_tanh_ps(_mm256_loadu_ps(g)), _mm256_loadu_ps(u)));
    for (int64_t j = i; j < n; ++j) out[j] = o[j - i];
  }
}

GEMMAX_AVX2 float exp_sub_sum_avx2(float* x, int64_t n, float shift) {
  const __m256 m = _mm256_set1_ps(shift);
  __m256 vsum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    _mm256_storeu_ps(x + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

GEMMAX_AVX2 double exp_sum_avx2(const float* x, int64_t n, float shift) {
  const __m256 m = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) sum += static_cast<double>(std::exp(x[i] - shift));
  return sum;
}

GEMMAX_AVX2 void softmax_avx2(float* x, int64_t n) {
  if (n <= 0) return;
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float max_v = -INFINITY;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  for (float v : lanes) max_v = std::fmax(max_v, v);
  for (int64_t j = i; j < n; ++j) max_v = std::fmax(max_v, x[j]);
  const float sum = exp_sub_sum_avx2(x, n, max_v);
  const __m256 inv = _mm256_set1_ps(1.0f / sum);
  for (i = 0; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
  for (; i < n; ++i) x[i] *= 1.0f / sum;
}

// The largest value first (max_ps returns its second operand, the running maximum, when the first
// is NaN, so NaNs drop out), in two chains; then the first element equal to it (-0 == +0, as the
// scalar rule's comparisons see them).
GEMMAX_AVX2 int64_t argmax_avx2(const float* x, int64_t n) {
  const float inf = std::numeric_limits<float>::infinity();
  __m256 m0 = _mm256_set1_ps(-inf), m1 = m0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
  float best = -inf;
  for (float v : lanes) best = std::max(best, v);
  for (; i < n; ++i)
    if (x[i] > best) best = x[i];
  const __m256 vb = _mm256_set1_ps(best);
  for (i = 0; i + 8 <= n; i += 8) {
    const int hits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vb, _CMP_EQ_OQ));
    if (hits != 0) return i + __builtin_ctz(static_cast<unsigned>(hits));
  }
  for (; i < n; ++i)
    if (x[i] == best) return i;
  return 0;  // all NaN
}

GEMMAX_AVX2 void axpy_avx2(float a, const float* x, int64_t n, float* y) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

// F16C rounds to nearest even, saturates to inf at 65520 and keeps subnormals, as f32_to_f16
// does; only a NaN's payload may differ (both stay NaN).
GEMMAX_AVX2 void f32_to_f16_row_avx2(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

// f32_to_bf16's integer rounding, 8 lanes at a time: the same bits for every input.
GEMMAX_AVX2 void f32_to_bf16_row_avx2(const float* x, int64_t n, uint16_t* out) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i quiet = _mm256_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, odd)), 16);
    const __m256i nan_bits = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
    const __m256i h = _mm256_blendv_epi8(rounded, nan_bits, nan);
    // 32-bit lanes hold 16-bit values: pack to words (lanes stay in 128-bit halves) and reorder.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

}  // namespace gemmax::detail
