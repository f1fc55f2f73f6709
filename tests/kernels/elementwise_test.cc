// Elementwise kernels against double-precision evaluations of their formulas.
#include "kernels/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

namespace gemmax {
namespace {

std::vector<float> random_vec(int64_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(Elementwise, RmsNormMatchesDouble) {
  const int64_t n = 640;
  const auto x = random_vec(n, 1, 3.0f), gamma = random_vec(n, 2);
  std::vector<float> out(n);
  rms_norm(x.data(), gamma.data(), n, 1e-6f, out.data());
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double scale = 1.0 / std::sqrt(ss / n + 1e-6);
  // A sequential f32 sum of n squares is within n * 2^-24 (~4e-5) relative; the sqrt halves that.
  for (int64_t i = 0; i < n; ++i) {
    const double want = x[i] * scale * gamma[i];
    EXPECT_NEAR(out[i], want, 3e-5 * std::fabs(want) + 1e-30) << i;
  }
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
  rope_rotate_half(x.data(), head_dim, 37.0f, inv_freq.data());
  for (int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(37.0f * inv_freq[i]);  // f32 angle, as documented
    const double a = x0[i], b = x0[i + half];
    // cos/sin of f32 arguments in f32 are within a few ulp of the double values.
    EXPECT_NEAR(x[i], a * std::cos(angle) - b * std::sin(angle), 1e-5) << i;
    EXPECT_NEAR(x[i + half], b * std::cos(angle) + a * std::sin(angle), 1e-5) << i;
  }
  auto same = x0;
  rope_rotate_half(same.data(), head_dim, 0.0f, inv_freq.data());
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
  const auto gate = random_vec(33, 6), up = random_vec(33, 7);
  std::vector<float> out(33);
  gelu_tanh_gated(gate.data(), up.data(), 33, out.data());
  for (int i = 0; i < 33; ++i) EXPECT_EQ(out[i], gelu_tanh(gate[i]) * up[i]) << i;
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

TEST(Elementwise, SoftmaxIsStableAndNormalised) {
  std::vector<float> x = {1000.0f, 1001.0f, 999.0f, -1e30f};
  softmax(x.data(), 4);
  const double e0 = std::exp(-1.0), e2 = std::exp(-2.0), z = e0 + 1.0 + e2;
  EXPECT_NEAR(x[0], e0 / z, 1e-6);
  EXPECT_NEAR(x[1], 1.0 / z, 1e-6);
  EXPECT_NEAR(x[2], e2 / z, 1e-6);
  EXPECT_EQ(x[3], 0.0f);
  auto r = random_vec(300, 8, 4.0f);
  softmax(r.data(), 300);
  double sum = 0;
  for (float v : r) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-5);  // 300 f32 additions of values <= 1
  softmax(nullptr, 0);          // no-op
}

}  // namespace
}  // namespace gemmax
