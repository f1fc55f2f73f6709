// Attention inner loops against double-precision sums, on every kernel path, and the property
// the model's batch invariance rests on: a (head, key) score or a head's output does not depend on
// how many heads or keys share the call.
#include "kernels/attention_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernel_paths.h"
#include "kernels/attention_kernels_internal.h"
#include "kernels/cpu_features.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "tensor/half.h"

namespace gemmax {
namespace {

std::vector<float> random_vec(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

// f16 copies of values and their exact f32 conversions.
struct HalfCopy {
  std::vector<uint16_t> h;
  std::vector<float> f;
  explicit HalfCopy(const std::vector<float>& v) : h(v.size()), f(v.size()) {
    for (size_t i = 0; i < v.size(); ++i) {
      h[i] = f32_to_f16(v[i]);
      f[i] = f16_to_f32(h[i]);
    }
  }
};

// Pointers to n rows of `stride` elements at base, row j stored at slot n - 1 - j: the kernels
// must follow the pointers (the model hands them rows from several KV pages), not assume a
// stride.
template <class T>
std::vector<const T*> reversed_rows(const T* base, int64_t n, int64_t stride) {
  std::vector<const T*> p(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) p[j] = base + (n - 1 - j) * stride;
  return p;
}

// One scores implementation under test: a kernel path through the public dispatch, or one of the
// vector kernels called directly (the AVX2 loop is what CPUs without AVX-512F run, so it is tested
// here even where the dispatch picks the AVX-512 one).
struct ScoresImpl {
  std::string name;
  KernelPath path;
  void (*f32)(const float*, int64_t, int64_t, const float* const*, int64_t, float, float*, int64_t,
              bool, const float* const*);
  void (*f16)(const float*, int64_t, int64_t, const uint16_t* const*, int64_t, float, float*,
              int64_t, bool, const uint16_t* const*);
};

std::vector<ScoresImpl> scores_impls() {
  std::vector<ScoresImpl> impls;
  for (KernelPath path : paths())
    impls.push_back({kernel_path_name(path), path, &attention_scores, &attention_scores});
  if (kernel_path_supported(KernelPath::kAvx2)) {
    impls.push_back({"avx2 loop", KernelPath::kAvx2, &detail::attention_scores_avx2,
                     &detail::attention_scores_avx2});
    if (cpu_features().avx512f)
      impls.push_back({"avx512 loop", KernelPath::kAvx2, &detail::attention_scores_avx512,
                       &detail::attention_scores_avx512});
  }
  return impls;
}

// Keys `stride` floats apart (the KV heads of a page row); head_dim 256 (Gemma 3) and 19 (vector
// groups plus a scalar tail); 1-6 heads and 0-11 keys cover every tile shape and the leftovers.
// The full calls stream and prefetch value rows as a decode step does; the pairs alone do not.
TEST(AttentionKernels, ScoresMatchDoubleAndDoNotDependOnTheCall) {
  PathGuard guard;
  const float scale = 0.0625f;
  for (int64_t hd : {256, 19}) {
    const int64_t stride = hd + 5, max_heads = 6, max_keys = 11;
    const auto q = random_vec(max_heads * hd, 1), keys = random_vec(max_keys * stride, 2);
    const HalfCopy keys16(keys);
    const auto kp = reversed_rows(keys.data(), max_keys, stride);
    const auto kh = reversed_rows(keys16.h.data(), max_keys, stride);
    const auto kf = reversed_rows(keys16.f.data(), max_keys, stride);
    for (const ScoresImpl& impl : scores_impls()) {
      set_kernel_path(impl.path);
      for (int64_t nh = 1; nh <= max_heads; ++nh)
        for (int64_t nk = 0; nk <= max_keys; ++nk) {
          // As a decode step calls them (streaming, with value rows to prefetch): the same
          // results as the plain calls below.
          std::vector<float> got(nh * 16, -1.0f), got16(nh * 16, -1.0f);
          impl.f32(q.data(), nh, hd, kp.data(), nk, scale, got.data(), 16, true, kp.data());
          impl.f16(q.data(), nh, hd, kh.data(), nk, scale, got16.data(), 16, true, kh.data());
          for (int64_t h = 0; h < nh; ++h) {
            for (int64_t j = 0; j < nk; ++j) {
              double exact = 0, abs_sum = 0;
              for (int64_t d = 0; d < hd; ++d) {
                exact += static_cast<double>(q[h * hd + d]) * kp[j][d];
                abs_sum += std::fabs(static_cast<double>(q[h * hd + d]) * kp[j][d]);
              }
              // f32 sums of 256 products: a few ulp of the absolute sum, far below 1e-5 of it.
              EXPECT_NEAR(got[h * 16 + j], scale * exact, 1e-5 * scale * abs_sum)
                  << impl.name << " hd=" << hd << " nh=" << nh << " nk=" << nk;
              // The same pair alone (decode scores one head at a time): identical.
              float alone = 0;
              impl.f32(q.data() + h * hd, 1, hd, kp.data() + j, 1, scale, &alone, 1, false,
                       nullptr);
              EXPECT_EQ(got[h * 16 + j], alone)
                  << impl.name << " h=" << h << " j=" << j << " nh=" << nh;
              // f16 keys: the same arithmetic on the converted values.
              float conv = 0;
              impl.f32(q.data() + h * hd, 1, hd, kf.data() + j, 1, scale, &conv, 1, false, nullptr);
              EXPECT_EQ(got16[h * 16 + j], conv) << impl.name << " f16 h=" << h << " j=" << j;
            }
            EXPECT_EQ(got[h * 16 + nk], -1.0f);  // nothing written past n_keys
          }
        }
    }
  }
}

// Per head, the same as n_rows axpy calls in order, bit for bit, on every path, whatever the
// number of heads in the call: 107 outputs = three 32-float slices, an 8-float slice and a scalar
// tail; 37 rows (two full blocks of 16 and a partial one), 120 floats apart; f16 rows equal the f32
// computation on the converted values.
// The AVX-512 value loop (chosen where the CPU has AVX-512F) against the AVX2 one, bit for bit:
// f32 and f16 rows, 1-6 heads (4-, 2- and 1-head passes), row counts that leave partial passes,
// widths with 16-, 8-float pieces and a scalar tail, streaming (prefetches) or not.
TEST(AttentionKernels, Avx512ValuesEqualAvx2Values) {
  if (!kernel_path_supported(KernelPath::kAvx2) || !cpu_features().avx512f)
    GTEST_SKIP() << "no AVX-512F";
  const int64_t stride = 272, max_heads = 6, w_stride = 64, out_stride = 280;
  for (const int64_t n : {int64_t{256}, int64_t{107}, int64_t{24}, int64_t{5}})
    for (const int64_t n_rows : {int64_t{1}, int64_t{13}, int64_t{37}, int64_t{60}}) {
      const auto rows = random_vec(n_rows * stride, 21), w = random_vec(max_heads * w_stride, 22);
      const auto out0 = random_vec(max_heads * out_stride, 23);
      const HalfCopy rows16(rows);
      const auto rp = reversed_rows(rows.data(), n_rows, stride);
      const auto rh = reversed_rows(rows16.h.data(), n_rows, stride);
      for (int64_t nh = 1; nh <= max_heads; ++nh)
        for (const bool stream : {false, true}) {
          auto a = out0, b = out0, a16 = out0, b16 = out0;
          detail::attention_values_avx2(w.data(), w_stride, nh, rp.data(), n_rows, n, a.data(),
                                        out_stride, stream);
          detail::attention_values_avx512(w.data(), w_stride, nh, rp.data(), n_rows, n, b.data(),
                                          out_stride, stream);
          detail::attention_values_avx2(w.data(), w_stride, nh, rh.data(), n_rows, n, a16.data(),
                                        out_stride, stream);
          detail::attention_values_avx512(w.data(), w_stride, nh, rh.data(), n_rows, n, b16.data(),
                                          out_stride, stream);
          EXPECT_EQ(a, b) << "f32 n=" << n << " rows=" << n_rows << " heads=" << nh;
          EXPECT_EQ(a16, b16) << "f16 n=" << n << " rows=" << n_rows << " heads=" << nh;
        }
    }
}

TEST(AttentionKernels, ValuesEqualAxpyInOrderForEveryHeadCount) {
  PathGuard guard;
  const int64_t n = 107, stride = 120, n_rows = 37, max_heads = 5, w_stride = 40, out_stride = 110;
  const auto rows = random_vec(n_rows * stride, 11), w = random_vec(max_heads * w_stride, 12);
  const auto out0 = random_vec(max_heads * out_stride, 13);
  const HalfCopy rows16(rows);
  const auto rp = reversed_rows(rows.data(), n_rows, stride);
  const auto rh = reversed_rows(rows16.h.data(), n_rows, stride);
  const auto rf = reversed_rows(rows16.f.data(), n_rows, stride);
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    for (int64_t nh = 1; nh <= max_heads; ++nh) {
      auto got = out0, got16 = out0, want = out0, want16 = out0;
      attention_values(w.data(), w_stride, nh, rp.data(), n_rows, n, got.data(), out_stride);
      attention_values(w.data(), w_stride, nh, rh.data(), n_rows, n, got16.data(), out_stride);
      for (int64_t h = 0; h < nh; ++h) {
        float* o = want.data() + h * out_stride;
        float* o16 = want16.data() + h * out_stride;
        for (int64_t j = 0; j < n_rows; ++j) {
          axpy(w[h * w_stride + j], rp[j], n, o);
          axpy(w[h * w_stride + j], rf[j], n, o16);
        }
        double d0 = out0[h * out_stride + 3];
        for (int64_t j = 0; j < n_rows; ++j)
          d0 += static_cast<double>(w[h * w_stride + j]) * rp[j][3];
        EXPECT_NEAR(got[h * out_stride + 3], d0, 1e-5);  // and it is the weighted sum
      }
      // Vector slices: exactly axpy's fmas. The scalar tail (the last 3) may fuse differently
      // from axpy's, so it is checked against the single-head call instead.
      for (int64_t h = 0; h < nh; ++h)
        for (int64_t d = 0; d < n; ++d) {
          const int64_t i = h * out_stride + d;
          if (d < 104 || path == KernelPath::kScalar) {
            EXPECT_EQ(got[i], want[i]) << kernel_path_name(path) << " nh=" << nh << " d=" << d;
            EXPECT_EQ(got16[i], want16[i]) << "f16 nh=" << nh << " d=" << d;
          }
        }
      for (int64_t h = 0; h < nh; ++h) {
        std::vector<float> alone(out0.begin() + h * out_stride, out0.begin() + h * out_stride + n);
        attention_values(w.data() + h * w_stride, w_stride, 1, rp.data(), n_rows, n, alone.data(),
                         n);
        for (int64_t d = 0; d < n; ++d) EXPECT_EQ(got[h * out_stride + d], alone[d]) << d;
      }
      for (int64_t i = nh * out_stride; i < max_heads * out_stride; ++i)
        ASSERT_EQ(got[i], out0[i]) << "a head past n_heads was written";
    }
  }
}

}  // namespace
}  // namespace gemmax
