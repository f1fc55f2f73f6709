// A non-owning view of a tensor inside a mapped checkpoint (or any buffer that outlives it). Shapes
// are outermost-first (PyTorch order): a [rows, cols] weight has `cols` contiguous elements per
// row. GGUF's innermost-first dimensions are reversed by the reader so both formats look the same
// here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace gemmax {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Innermost dimension: elements per row.
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  // Everything but the innermost dimension.
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  int64_t row_bytes() const { return dtype_row_bytes(dtype, cols()); }
  const std::byte* row(int64_t r) const { return data + r * row_bytes(); }
};

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace gemmax
