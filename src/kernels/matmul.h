// Linear layers: y = x W^T with W stored in any supported format (never dequantized as a whole).
#pragma once

#include <cstdint>
#include <span>

#include "kernels/thread_pool.h"
#include "tensor/tensor_view.h"

namespace gemmax {

// x: [n_tokens, w.cols()] f32 row-major. y: [n_tokens, w.rows()] f32 row-major.
// y[t][o] = sum_i x[t][i] * W[o][i]. `pool` may be null (single thread).
void matmul(const float* x, int64_t n_tokens, const TensorView& w, float* y, ThreadPool* pool);

// One product of a fused matmul: y = x W^T, y: [n_tokens, w->rows()].
struct MatmulOutput {
  const TensorView* w;
  float* y;
};

// Several products of the same x (q/k/v, gate/up) in one pass over the pool: the activations are
// quantized once per format and the rows of all weights are split over the threads together, so a
// decode step pays one synchronisation instead of one per weight. Every weight must have x's
// column count. Each y is bit-identical to matmul() of its weight alone.
void matmul_fused(const float* x, int64_t n_tokens, std::span<const MatmulOutput> outputs,
                  ThreadPool* pool);

// Same contract, the plain reference (dequantize a row, dot product) used by the tests.
void matmul_reference(const float* x, int64_t n_tokens, const TensorView& w, float* y);

// sum_i a[i] * b[i] in f32 on the current kernel path (AVX2/FMA or 8 scalar partial sums); the
// attention scores use it.
float dot_f32(const float* a, const float* b, int64_t n);

// Which implementation matmul() uses. kAvx2 quantizes the activations of block-quantized weights to
// int8 (per 32 or 256 elements) and uses integer dot products; F32/F16/BF16 weights stay in f32.
// kScalar is portable plain C++ (dequantize a row, f32 dot) and is always available.
enum class KernelPath { kScalar, kAvx2 };

// The process-wide choice: at first use, GEMMAX_KERNELS=scalar|avx2|auto (default auto = the best
// the CPU supports); an unknown value or avx2 on a CPU without AVX2+FMA+F16C throws.
KernelPath kernel_path();
// Forces a path for the whole process (tests, benchmarks); throws if the CPU cannot run it.
void set_kernel_path(KernelPath path);
bool kernel_path_supported(KernelPath path);
const char* kernel_path_name(KernelPath path);

}  // namespace gemmax
