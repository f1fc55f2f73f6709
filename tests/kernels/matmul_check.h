// Shared by the kernel tests: matmul vs matmul_reference with error bounds derived from the
// numerics.
//
// Tolerances, per output y[t][o], with S = sum_i |x_i * w_i|:
//  * f32 arithmetic only (scalar path; AVX2 path for F32/F16/BF16 and the dequantizing Q2_K/Q3_K
//    path): |err| <= 1e-5 * S. Partial sums of k products in f32 carry at most ~(k/8 + 3) * 2^-24
//    relative error each, < 1e-5 for the k <= 2048 used here.
//  * int8 activations (AVX2 path for the other quantized formats): rounding x to d*q with
//    d = max|x_block| / 127 moves each x_i by at most d/2, so |err| <= sum_blocks d/2 * sum |w_i|
//    (computed exactly below, +1% for the f32 evaluation of d) plus the 1e-5 * S above. Weights and
//    integer sums are exact. Separately the relative error err / S must stay below 1e-2.
//  * bf16 activations (the vdpbf16ps kernels for BF16 weights on AVX512-BF16 CPUs): each x_i is
//    rounded to the nearest bf16, so |err| <= sum |w_i| * |x_i - bf16(x_i)| (computed exactly,
//    at most 2^-9 * S) plus the 1e-5 * S above; products of bf16 pairs are exact in f32.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dequantize.h"
#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"
#include "tensor/half.h"

namespace gemmax {

// Activation block size the AVX2 path quantizes x with for this format; 0 when x stays f32.
inline int64_t act_block(DType t) {
  switch (detail::avx2_row_kernel(t, 1024, 1).act) {
    case detail::ActFormat::kA8x32:
    case detail::ActFormat::kA8Quad:
      return 32;
    case detail::ActFormat::kA8x256:
      return 256;
    default:
      return 0;
  }
}

// Whether the AVX2 path rounds this format's activations to bf16 (vdpbf16ps kernels) for rows of
// `cols` elements.
inline bool bf16_activations(DType t, int64_t cols) {
  return detail::avx2_row_kernel(t, cols, 1).act == detail::ActFormat::kBF16;
}

struct Bounds {
  double abs_sum;  // S = sum |x_i w_i|
  double quant;    // sum over activation blocks of (max|x| / 254) * sum |w_i|
};

// block: the int8 activation block size, 0 for none, -1 for bf16 activations.
inline Bounds bounds_for(const float* x, const float* w, int64_t k, int64_t block) {
  Bounds b{0.0, 0.0};
  for (int64_t i = 0; i < k; ++i) b.abs_sum += std::fabs(static_cast<double>(x[i]) * w[i]);
  if (block < 0) {
    for (int64_t i = 0; i < k; ++i) {
      const double rounded = bf16_to_f32(f32_to_bf16(x[i]));
      b.quant += std::fabs(static_cast<double>(x[i]) - rounded) * std::fabs(w[i]);
    }
    return b;
  }
  if (block == 0) return b;
  for (int64_t s = 0; s < k; s += block) {
    double amax = 0.0, wsum = 0.0;
    for (int64_t i = s; i < s + block; ++i) {
      amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
      wsum += std::fabs(static_cast<double>(w[i]));
    }
    b.quant += amax / 254.0 * wsum;
  }
  return b;
}

inline void expect_matches_reference(const TensorView& w, const std::vector<float>& x,
                                     int64_t n_tokens, KernelPath path, ThreadPool* pool) {
  const DType t = w.dtype;
  const int64_t rows = w.rows(), cols = w.cols();
  std::vector<float> ref(static_cast<size_t>(n_tokens * rows)), got(ref.size(), NAN);
  matmul_reference(x.data(), n_tokens, w, ref.data());
  set_kernel_path(path);
  matmul(x.data(), n_tokens, w, got.data(), pool);

  const int64_t block = path != KernelPath::kAvx2   ? 0
                        : bf16_activations(t, cols) ? -1
                                                    : act_block(t);
  std::vector<float> wrow(static_cast<size_t>(cols));
  for (int64_t o = 0; o < rows; ++o) {
    dequantize_row(t, w.row(o), wrow.data(), cols);
    for (int64_t tok = 0; tok < n_tokens; ++tok) {
      const Bounds b = bounds_for(x.data() + tok * cols, wrow.data(), cols, block);
      const double err = std::fabs(static_cast<double>(got[tok * rows + o]) - ref[tok * rows + o]);
      const double allowed = 1.01 * b.quant + 1e-5 * b.abs_sum + 1e-30;
      ASSERT_LE(err, allowed) << w.name << " " << dtype_name(t) << " path "
                              << kernel_path_name(path) << " rows " << rows << " cols " << cols
                              << " tokens " << n_tokens << " at t=" << tok << " o=" << o << ": got "
                              << got[tok * rows + o] << " want " << ref[tok * rows + o];
      if (b.abs_sum > 0) {
        ASSERT_LE(err / b.abs_sum, 1e-2) << w.name << " " << dtype_name(t) << " o=" << o;
      }
    }
  }
}

}  // namespace gemmax
