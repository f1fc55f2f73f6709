// Linear layers: y = x W^T with W stored in any supported format (never dequantized as a whole).
#pragma once

#include <cstdint>

#include "kernels/thread_pool.h"
#include "tensor/tensor_view.h"

namespace gemmax {

// x: [n_tokens, w.cols()] f32 row-major. y: [n_tokens, w.rows()] f32 row-major.
// y[t][o] = sum_i x[t][i] * W[o][i]. `pool` may be null (single thread).
void matmul(const float* x, int64_t n_tokens, const TensorView& w, float* y, ThreadPool* pool);

// Same contract, the plain reference (dequantize a row, dot product) used by the tests.
void matmul_reference(const float* x, int64_t n_tokens, const TensorView& w, float* y);

}  // namespace gemmax
