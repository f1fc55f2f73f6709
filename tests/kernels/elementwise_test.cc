// Elementwise kernels against double-precision evaluations of their formulas.
#include "kernels/elementwise.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "kernel_paths.h"
#include "kernels/matmul.h"
#include "tensor/half.h"

namespace gemmax {
namespace {

std::vector<float> random_vec(int64_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(Elementwise, RmsNormInPlace) {
  const auto x = random_vec(64, 3), gamma = random_vec(64, 4);
  std::vector<float> separate(64), in_place = x;
  rms_norm(x.data(), gamma.data(), 64, 1e-6f, separate.data());
  rms_norm(in_place.data(), gamma.data(), 64, 1e-6f, in_place.data());
  EXPECT_EQ(separate, in_place);
}

TEST(Elementwise, RopeRotatesPairsByPosTimesInvFreq) {
  const int64_t head_dim = 256, half = head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / head_dim);
  const auto x0 = random_vec(head_dim, 5);
  auto x = x0;
  std::vector<float> cos_sin(head_dim);
  rope_cos_sin(37.0f, inv_freq.data(), half, cos_sin.data());
  rope_rotate_half(x.data(), head_dim, cos_sin.data());
  for (int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(37.0f * inv_freq[i]);  // f32 angle, as documented
    const double a = x0[i], b = x0[i + half];
    // cos/sin of f32 arguments in f32 are within a few ulp of the double values.
    EXPECT_NEAR(x[i], a * std::cos(angle) - b * std::sin(angle), 1e-5) << i;
    EXPECT_NEAR(x[i + half], b * std::cos(angle) + a * std::sin(angle), 1e-5) << i;
  }
  auto same = x0;
  rope_cos_sin(0.0f, inv_freq.data(), half, cos_sin.data());
  rope_rotate_half(same.data(), head_dim, cos_sin.data());
  EXPECT_EQ(same, x0);  // position 0 is the identity
}

TEST(Elementwise, GeluTanhMatchesFormula) {
  EXPECT_EQ(gelu_tanh(0.0f), 0.0f);
  for (float x = -8.0f; x <= 8.0f; x += 0.125f) {
    const double xd = x;
    const double want =
        0.5 * xd *
        (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (xd + 0.044715 * xd * xd * xd)));
    EXPECT_NEAR(gelu_tanh(x), want, 1e-6 * std::fabs(want) + 1e-6) << x;
  }
}

// On every path; 645 = vector blocks and a scalar tail on the AVX2 path.
TEST(Elementwise, RmsNormMatchesDouble) {
  PathGuard guard;
  const int64_t n = 645;
  const auto x = random_vec(n, 1, 3.0f), gamma = random_vec(n, 2);
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double scale = 1.0 / std::sqrt(ss / n + 1e-6);
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    std::vector<float> out(n);
    rms_norm(x.data(), gamma.data(), n, 1e-6f, out.data());
    // A sequential f32 sum of n squares is within n * 2^-24 (~4e-5) relative (the lane sums of the
    // AVX2 path less); the sqrt halves that.
    for (int64_t i = 0; i < n; ++i) {
      const double want = x[i] * scale * gamma[i];
      EXPECT_NEAR(out[i], want, 3e-5 * std::fabs(want) + 1e-30)
          << kernel_path_name(path) << " " << i;
    }
  }
}

// The gated form on every path: the scalar path is gelu_tanh (libm tanh) bit for bit; the AVX2
// path evaluates g / (1 + e^(-2u)) with a vector exp, so it is held to the double formula: 4e-6
// relative (a few f32 roundings, one of them in exp) plus 1e-7 absolute near zero, where u ~ 0.
// Lengths 33 and 1000 cover the vector body and the tail; inputs reach |g| = 16 (exp saturates).
TEST(Elementwise, GeluTanhGatedOnEveryPath) {
  PathGuard guard;
  for (int64_t n : {33, 1000}) {
    auto gate = random_vec(n, 6, 4.0f);
    gate[0] = 16.0f, gate[1] = -16.0f, gate[2] = 0.0f, gate[3] = -0.0f;
    const auto up = random_vec(n, 7);
    for (KernelPath path : paths()) {
      set_kernel_path(path);
      std::vector<float> out(n);
      gelu_tanh_gated(gate.data(), up.data(), n, out.data());
      for (int64_t i = 0; i < n; ++i) {
        if (path == KernelPath::kScalar) {
          EXPECT_EQ(out[i], gelu_tanh(gate[i]) * up[i]) << i;
          continue;
        }
        const double g = gate[i];
        const double want =
            0.5 * g *
            (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (g + 0.044715 * g * g * g))) *
            up[i];
        EXPECT_NEAR(out[i], want, 4e-6 * std::fabs(want) + 1e-7) << "n " << n << " i " << i;
      }
    }
  }
}

// y += a x on every path against double; one rounding per element (f32 fma or mul+add).
TEST(Elementwise, AxpyOnEveryPath) {
  PathGuard guard;
  const auto x = random_vec(37, 9), y0 = random_vec(37, 10);
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    auto y = y0;
    axpy(0.37f, x.data(), 37, y.data());
    for (int i = 0; i < 37; ++i)
      EXPECT_NEAR(y[i], y0[i] + 0.37 * x[i], 2e-7 * (std::fabs(y0[i]) + std::fabs(x[i]))) << i;
  }
}

// argmax on every path: the first largest, as std::max_element, for lengths around the vector
// widths, ties (the first wins), +0/-0, infinities; NaNs skipped wherever they are, 0 if all NaN.
TEST(Elementwise, ArgmaxFindsTheFirstLargestOnEveryPath) {
  PathGuard guard;
  std::mt19937 rng(31);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    for (int n : {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 262144}) {
      std::uniform_int_distribution<int> small(-3, 3);  // few values: many ties
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = static_cast<float>(small(rng));
      const auto first_max = [&] { return std::max_element(x.begin(), x.end()) - x.begin(); };
      EXPECT_EQ(argmax(x.data(), n), first_max()) << kernel_path_name(path) << " n=" << n;
      x[static_cast<size_t>(n - 1)] = 9;  // the largest in the scalar tail
      EXPECT_EQ(argmax(x.data(), n), first_max()) << kernel_path_name(path) << " n=" << n;
      std::vector<float> nans = x;
      nans[0] = nan;  // std::max_element would return 0 here; argmax skips it
      nans[static_cast<size_t>(n / 2)] = nan;
      if (n > 2) {
        EXPECT_EQ(argmax(nans.data(), n), n - 1) << kernel_path_name(path) << " n=" << n;
      }
    }
    const std::vector<float> zeros = {-0.0f, 0.0f, -0.0f, 0.0f, -1.0f, -0.0f, 0.0f, 0.0f, 0.0f};
    EXPECT_EQ(argmax(zeros.data(), 9), 0) << kernel_path_name(path);
    const std::vector<float> ninf(19, -inf);
    EXPECT_EQ(argmax(ninf.data(), 19), 0) << kernel_path_name(path);
    std::vector<float> infs(19, 1.0f);
    infs[11] = inf;
    infs[17] = inf;
    EXPECT_EQ(argmax(infs.data(), 19), 11) << kernel_path_name(path);
    const std::vector<float> all_nan(21, nan);
    EXPECT_EQ(argmax(all_nan.data(), 21), 0) << kernel_path_name(path);
    std::vector<float> nan_then_neg(10, nan);
    nan_then_neg[9] = -5.0f;
    EXPECT_EQ(argmax(nan_then_neg.data(), 10), 9) << kernel_path_name(path);
  }
}

// The half conversions the KV cache stores through: on every path the bits of the scalar
// per-element rounding (tensor/half.h), which the real-model golden tests already rest on, for
// values around every rounding edge: ties, subnormals, the largest finite values, overflow, inf.
// A NaN stays a NaN (F16C keeps its payload, the scalar rule makes a canonical one).
TEST(Elementwise, HalfRowConversionsRoundLikeTheScalarRule) {
  PathGuard guard;
  std::mt19937 rng(23);
  std::vector<float> x;
  for (uint32_t bits :
       {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00001u, 0xffa00000u, 0x477fefffu,
        0x477ff000u, 0x477fe000u, 0x33000000u, 0x33000001u, 0x387fc000u, 0x38800000u, 0x3f801000u,
        0x3f803000u, 0x3f808000u, 0x3f818000u, 0x7f7fffffu})
    x.push_back(std::bit_cast<float>(bits));
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 4000; ++i) x.push_back(std::bit_cast<float>(any(rng)));  // every exponent
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int i = 0; i < 4000; ++i) x.push_back(normal(rng));
  const int64_t n = static_cast<int64_t>(x.size());  // not a multiple of 8: the tail too
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    std::vector<uint16_t> h(x.size()), b(x.size());
    f32_to_f16_row(x.data(), n, h.data());
    f32_to_bf16_row(x.data(), n, b.data());
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = std::bit_cast<uint32_t>(x[i]);
      if (std::isnan(x[i])) {
        EXPECT_TRUE(std::isnan(f16_to_f32(h[i]))) << std::hex << bits;
        EXPECT_TRUE(std::isnan(bf16_to_f32(b[i]))) << std::hex << bits;
        continue;
      }
      ASSERT_EQ(h[i], f32_to_f16(x[i])) << kernel_path_name(path) << " f16 of " << std::hex << bits;
      ASSERT_EQ(b[i], f32_to_bf16(x[i]))
          << kernel_path_name(path) << " bf16 of " << std::hex << bits;
    }
  }
}

TEST(Elementwise, SoftcapBoundsValues) {
  std::vector<float> x = {0.0f, 1.0f, -5.0f, 30.0f, 1e6f, -1e6f};
  const auto x0 = x;
  softcap(x.data(), static_cast<int64_t>(x.size()), 30.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(x[i], 30.0 * std::tanh(x0[i] / 30.0), 2e-6 * 30.0) << i;
    EXPECT_LE(std::fabs(x[i]), 30.0f);
  }
}

// On every path; 11 values so the AVX2 path runs its vector body and its scalar tail.
TEST(Elementwise, SoftmaxIsStableAndNormalised) {
  PathGuard guard;
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    std::vector<float> x = {1000.0f, 1001.0f, 999.0f, -1e30f,  -INFINITY, 1000.0f,
                            1001.0f, 999.0f,  -1e30f, 1000.0f, 998.0f};
    softmax(x.data(), 11);
    const double e1 = std::exp(-1.0), e2 = std::exp(-2.0), e3 = std::exp(-3.0);
    const double z = 3 * e1 + 2.0 + 2 * e2 + e3;
    const double want[] = {e1 / z, 1 / z, e2 / z, 0, 0, e1 / z, 1 / z, e2 / z, 0, e1 / z, e3 / z};
    for (int i = 0; i < 11; ++i)  // exp within a few ulp, then one division
      EXPECT_NEAR(x[i], want[i], 1e-6) << kernel_path_name(path) << " " << i;
    EXPECT_EQ(x[3], 0.0f);
    EXPECT_EQ(x[4], 0.0f);
    auto r = random_vec(300, 8, 4.0f);
    softmax(r.data(), 300);
    double sum = 0;
    for (float v : r) sum += v;
    EXPECT_NEAR(sum, 1.0, 1e-5);  // 300 f32 additions of values <= 1
    softmax(nullptr, 0);          // no-op
  }
}

// The vector exp inside softmax against libm over the whole input range, through softmax of a
// pair {x, 0}: x[0] = e^x / (e^x + 1), so exp errors show directly.
TEST(Elementwise, SoftmaxExpMatchesLibm) {
  PathGuard guard;
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    for (float v = -100.0f; v <= 100.0f; v += 0.37f) {
      std::vector<float> x(16, -INFINITY);
      x[0] = v, x[9] = 0.0f;  // one in the vector body, one in the tail
      softmax(x.data(), 16);
      const double want = 1.0 / (1.0 + std::exp(-static_cast<double>(v)));
      const double other = 1.0 / (1.0 + std::exp(static_cast<double>(v)));  // not 1 - want
      EXPECT_NEAR(x[0], want, 2e-6 * want + 1e-37) << kernel_path_name(path) << " " << v;
      EXPECT_NEAR(x[9], other, 2e-6 * other + 1e-37) << kernel_path_name(path) << " " << v;
    }
  }
}

// exp_sum against f64 libm on every path: vector body and tail, -inf entries (0) and a shift at
// the maximum (the log-softmax normaliser).
TEST(Elementwise, ExpSumMatchesDoubleOnEveryPath) {
  PathGuard guard;
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    for (int64_t n : {0, 1, 7, 8, 19, 1000}) {
      std::vector<float> x(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>((i * 37) % 101) * 0.3f - 20.0f;
      if (n > 3) x[3] = -INFINITY;
      const float shift = n > 0 ? *std::max_element(x.begin(), x.end()) : 0.0f;
      double want = 0;
      for (float v : x) want += std::exp(static_cast<double>(v) - shift);
      const std::vector<float> before = x;
      EXPECT_NEAR(exp_sum(x.data(), n, shift), want, 3e-6 * want) << kernel_path_name(path) << n;
      EXPECT_EQ(x, before);  // read only
    }
  }
}

}  // namespace
}  // namespace gemmax
