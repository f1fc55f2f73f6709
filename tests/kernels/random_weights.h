// Random weights of any format for the kernel tests: floats ~ N(0, 1), block formats with random
// codes and finite f16 scales of either sign in [1e-3, 1], and random activations.
#pragma once

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/half.h"
#include "tensor/tensor_view.h"

namespace gemmax::testing {

// Byte offsets of the f16 scale fields per block, so random blocks have finite, modest scales.
inline std::vector<int> scale_fields(DType t) {
  switch (t) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0:
      return {0};
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {0, 2};
    case DType::kQ2_K:
      return {80, 82};
    case DType::kQ3_K:
      return {108};
    case DType::kQ6_K:
      return {208};
    case DType::kQ5_0x4:
      return {80, 82, 84, 86};
    default:
      return {};
  }
}

struct Weights {
  std::vector<std::byte> bytes;
  TensorView view;
};

inline Weights random_weights(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  Weights w;
  w.view.name = "test.weight";
  w.view.dtype = t;
  w.view.shape = {rows, cols};
  const int64_t row_bytes = w.view.row_bytes();
  w.bytes.resize(static_cast<size_t>(rows * row_bytes));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> log_scale(-3.0f, 0.0f);
  const auto put16 = [&](size_t off, uint16_t h) { std::memcpy(w.bytes.data() + off, &h, 2); };
  if (t == DType::kF32) {
    for (size_t i = 0; i < w.bytes.size() / 4; ++i) {
      const float v = normal(rng);
      std::memcpy(w.bytes.data() + 4 * i, &v, 4);
    }
  } else if (t == DType::kF16 || t == DType::kBF16) {
    for (size_t i = 0; i < w.bytes.size() / 2; ++i) {
      put16(2 * i, t == DType::kF16 ? f32_to_f16(normal(rng)) : f32_to_bf16(normal(rng)));
    }
  } else {
    for (auto& b : w.bytes) b = static_cast<std::byte>(byte(rng));
    const DTypeLayout layout = require_layout(t);
    for (size_t blk = 0; blk < w.bytes.size() / layout.block_bytes; ++blk) {
      for (int off : scale_fields(t)) {
        const float sign = byte(rng) < 40 ? -1.0f : 1.0f;
        put16(blk * layout.block_bytes + off, f32_to_f16(sign * std::pow(10.0f, log_scale(rng))));
      }
    }
  }
  w.view.data = w.bytes.data();
  w.view.nbytes = w.bytes.size();
  return w;
}

inline std::vector<float> random_x(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = normal(rng);
  return x;
}

}  // namespace gemmax::testing
