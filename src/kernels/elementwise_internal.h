// Internal interface between elementwise.cc (the dispatch) and the AVX2 kernels
// (elementwise_avx2.cc). Only call these when the CPU has AVX2+FMA.
#pragma once

#include <cstdint>

namespace gemmax::detail {

void gelu_tanh_gated_avx2(const float* gate, const float* up, int64_t n, float* out);
void softmax_avx2(float* x, int64_t n);
void axpy_avx2(float a, const float* x, int64_t n, float* y);
float exp_sub_sum_avx2(float* x, int64_t n, float shift);
void accumulate_rows_avx2(const float* w, const float* rows, int64_t n_rows, int64_t stride,
                          int64_t n, float* out);
void accumulate_rows_f16_avx2(const float* w, const uint16_t* rows, int64_t n_rows, int64_t stride,
                              int64_t n, float* out);

}  // namespace gemmax::detail
