// Small per-row kernels of the transformer: RMSNorm, RoPE, GELU, softmax, tanh softcapping.
#pragma once

#include <cstdint>

namespace gemmax {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * gamma[i]; accumulates in f32 (double not needed).
// Gemma's (1 + w) is folded into gamma by the caller. `out` may alias `x`.
void rms_norm(const float* x, const float* gamma, int64_t n, float eps, float* out);

// RoPE angles of one position: cos_sin[i] = cos(pos * inv_freq[i]), cos_sin[half + i] = sin(...),
// i < half, the angle computed in f32 as transformers does. A token's heads share one table.
void rope_cos_sin(float pos, const float* inv_freq, int64_t half, float* cos_sin);

// Rotate-half RoPE on one head vector of `head_dim` elements, in place: pair (i, i + head_dim/2)
// rotated by the angle whose cos and sin rope_cos_sin put in cos_sin (head_dim entries).
void rope_rotate_half(float* x, int64_t head_dim, const float* cos_sin);

// gelu with the tanh approximation (PyTorch's approximate="tanh"), gated: out[i] = gelu(gate[i]) *
// up[i].
void gelu_tanh_gated(const float* gate, const float* up, int64_t n, float* out);
float gelu_tanh(float x);

// x[i] = cap * tanh(x[i] / cap).
void softcap(float* x, int64_t n, float cap);

// In-place numerically stable softmax.
void softmax(float* x, int64_t n);

// x[i] = exp(x[i] - shift); returns the sum (the unnormalised softmax of a key chunk).
float exp_sub_sum(float* x, int64_t n, float shift);

// sum_i exp(x[i] - shift), x untouched: each exponential in f32 (the vector exp on AVX2), the sum
// in f64 (a log-softmax normaliser over a 262k vocabulary, where f32 lanes would lose digits).
double exp_sum(const float* x, int64_t n, float shift);

// Index of the first largest of n >= 1 values, what std::max_element gives for values without
// NaN; NaNs are skipped (0 if all are NaN). A vector max, then a search for its first copy: the
// scalar std::max_element over a 262k vocabulary took ~0.25 ms of each greedy token (5% of a
// 270M Q4_0 step).
int64_t argmax(const float* x, int64_t n);

// y[i] += a * x[i] (attention's weighted sum of values).
void axpy(float a, const float* x, int64_t n, float* y);

// Rounds n floats to IEEE half (F16) or bfloat16 bits, nearest even (tensor/half.h's f32_to_f16 /
// f32_to_bf16 per element; on the AVX2 path a NaN's payload may differ, it stays a NaN). The KV
// cache stores every K/V row through these.
void f32_to_f16_row(const float* x, int64_t n, uint16_t* out);
void f32_to_bf16_row(const float* x, int64_t n, uint16_t* out);

// gelu_tanh_gated, softmax, argmax, axpy and the half conversions use AVX2 on the avx2 kernel path
// (kernels/matmul.h): the vector exp is within a few ulp of libm, see
// tests/kernels/elementwise_test.cc.

}  // namespace gemmax
