#include "tensor/dtype.h"

#include <stdexcept>
#include <string>

namespace gemmax {

std::optional<DTypeLayout> dtype_layout(DType t) {
  switch (t) {
    case DType::kF32:
      return DTypeLayout{"F32", 1, 4};
    case DType::kF16:
      return DTypeLayout{"F16", 1, 2};
    case DType::kBF16:
      return DTypeLayout{"BF16", 1, 2};
    case DType::kQ4_0:
      return DTypeLayout{"Q4_0", 32, 18};
    case DType::kQ4_1:
      return DTypeLayout{"Q4_1", 32, 20};
    case DType::kQ5_0:
      return DTypeLayout{"Q5_0", 32, 22};
    case DType::kQ5_1:
      return DTypeLayout{"Q5_1", 32, 24};
    case DType::kQ8_0:
      return DTypeLayout{"Q8_0", 32, 34};
    case DType::kQ8_1:
      return DTypeLayout{"Q8_1", 32, 36};
    case DType::kQ2_K:
      return DTypeLayout{"Q2_K", 256, 84};
    case DType::kQ3_K:
      return DTypeLayout{"Q3_K", 256, 110};
    case DType::kQ4_K:
      return DTypeLayout{"Q4_K", 256, 144};
    case DType::kQ5_K:
      return DTypeLayout{"Q5_K", 256, 176};
    case DType::kQ6_K:
      return DTypeLayout{"Q6_K", 256, 210};
    case DType::kQ8_K:
      return DTypeLayout{"Q8_K", 256, 292};
    case DType::kQ5_0x4:
      return DTypeLayout{"Q5_0x4", 128, 88};
  }
  return std::nullopt;
}

DTypeLayout require_layout(DType t) {
  auto layout = dtype_layout(t);
  if (!layout) {
    throw std::runtime_error("unsupported tensor type id " +
                             std::to_string(static_cast<uint32_t>(t)));
  }
  return *layout;
}

std::string_view dtype_name(DType t) {
  auto layout = dtype_layout(t);
  return layout ? layout->name : std::string_view("unknown");
}

int64_t dtype_row_bytes(DType t, int64_t n_elements) {
  const DTypeLayout layout = require_layout(t);
  if (n_elements < 0 || n_elements % layout.block_size != 0) {
    throw std::runtime_error(std::string(layout.name) + " needs a multiple of " +
                             std::to_string(layout.block_size) + " elements per row, got " +
                             std::to_string(n_elements));
  }
  return n_elements / layout.block_size * layout.block_bytes;
}

bool dtype_is_quantized(DType t) {
  return t != DType::kF32 && t != DType::kF16 && t != DType::kBF16;
}

bool dtype_is_repacked(DType t) { return t == DType::kQ5_0x4; }

}  // namespace gemmax
