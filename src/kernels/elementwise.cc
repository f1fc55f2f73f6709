#include "kernels/elementwise.h"

#include <algorithm>
#include <cmath>

#include "kernels/elementwise_internal.h"
#include "kernels/matmul.h"
#include "tensor/half.h"

namespace gemmax {

void rms_norm(const float* x, const float* gamma, int64_t n, float eps, float* out) {
  // dot_f32 sums the squares in independent partial sums (32 lanes on AVX2): a sequential f32 sum
  // is one dependent chain of n additions (~2% of a 270M prefill).
  const float sum_sq = dot_f32(x, x, n);
  const float scale = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * gamma[i];
}

void rope_cos_sin(float pos, const float* inv_freq, int64_t half, float* cos_sin) {
  for (int64_t i = 0; i < half; ++i) {
    const float angle = pos * inv_freq[i];  // f32, as transformers (f32 inv_freq and positions)
    cos_sin[i] = std::cos(angle);
    cos_sin[half + i] = std::sin(angle);
  }
}

void rope_rotate_half(float* x, int64_t head_dim, const float* cos_sin) {
  const int64_t half = head_dim / 2;
  const float* c = cos_sin;
  const float* s = cos_sin + half;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i];
    const float b = x[i + half];
    x[i] = a * c[i] - b * s[i];
    x[i + half] = b * c[i] + a * s[i];
  }
}

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

void gelu_tanh_gated(const float* gate, const float* up, int64_t n, float* out) {
  if (kernel_path() == KernelPath::kAvx2) return detail::gelu_tanh_gated_avx2(gate, up, n, out);
  for (int64_t i = 0; i < n; ++i) out[i] = gelu_tanh(gate[i]) * up[i];
}

void softcap(float* x, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

void softmax(float* x, int64_t n) {
  if (kernel_path() == KernelPath::kAvx2) return detail::softmax_avx2(x, n);
  if (n <= 0) return;
  const float max_v = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_v);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float exp_sub_sum(float* x, int64_t n, float shift) {
  if (kernel_path() == KernelPath::kAvx2) return detail::exp_sub_sum_avx2(x, n, shift);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

double exp_sum(const float* x, int64_t n, float shift) {
  if (kernel_path() == KernelPath::kAvx2) return detail::exp_sum_avx2(x, n, shift);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(std::exp(x[i] - shift));
  return sum;
}

int64_t argmax(const float* x, int64_t n) {
  if (kernel_path() == KernelPath::kAvx2) return detail::argmax_avx2(x, n);
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
  return best < 0 ? 0 : best;
}

void axpy(float a, const float* x, int64_t n, float* y) {
  if (kernel_path() == KernelPath::kAvx2) return detail::axpy_avx2(a, x, n, y);
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void f32_to_f16_row(const float* x, int64_t n, uint16_t* out) {
  if (kernel_path() == KernelPath::kAvx2) return detail::f32_to_f16_row_avx2(x, n, out);
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

void f32_to_bf16_row(const float* x, int64_t n, uint16_t* out) {
  if (kernel_path() == KernelPath::kAvx2) return detail::f32_to_bf16_row_avx2(x, n, out);
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

}  // namespace gemmax
