// Block formats -> f32. The scalar code here is the reference every SIMD path is tested against.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace gemmax {

// Converts `n` elements (a whole number of blocks of `t`) starting at `src` into `dst`.
// Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the
// repacked Q5_0x4; throws std::runtime_error naming the format otherwise.
void dequantize_row(DType t, const std::byte* src, float* dst, int64_t n);

}  // namespace gemmax
