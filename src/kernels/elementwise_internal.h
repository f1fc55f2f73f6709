// Internal interface between elementwise.cc (the dispatch) and the AVX2 kernels
// (elementwise_avx2.cc). Only call these when the CPU has AVX2+FMA.
#pragma once

#include <cstdint>

namespace gemmax::detail {

void gelu_tanh_gated_avx2(const float* gate, const float* up, int64_t n, float* out);
void softmax_avx2(float* x, int64_t n);
void axpy_avx2(float a, const float* x, int64_t n, float* y);
int64_t argmax_avx2(const float* x, int64_t n);
float exp_sub_sum_avx2(float* x, int64_t n, float shift);
double exp_sum_avx2(const float* x, int64_t n, float shift);
void f32_to_f16_row_avx2(const float* x, int64_t n, uint16_t* out);
void f32_to_bf16_row_avx2(const float* x, int64_t n, uint16_t* out);

}  // namespace gemmax::detail
