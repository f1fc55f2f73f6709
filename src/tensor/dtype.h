// Element and block formats of weights and activations. The numeric values are GGML's type ids so a
// GGUF tensor-type field maps onto DType without a table; safetensors dtypes map onto the same
// enum.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace gemmax {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
  // Made by gemmax at load time (kernels/weight_repack.h), never read from a file: Q5_0 rows with
  // their blocks regrouped four at a time in the order the AVX2 kernels consume them. An id
  // outside GGML's range; the GGUF reader rejects it (dtype_is_repacked).
  kQ5_0x4 = 0x10006,
};

// How a format packs elements: `block_size` elements take `block_bytes` bytes.
struct DTypeLayout {
  std::string_view name;
  int64_t block_size;
  int64_t block_bytes;
};

// Layout of a format; nullopt for GGML ids gemmax does not know (the caller names the tensor).
std::optional<DTypeLayout> dtype_layout(DType t);

// The layout or an exception naming the unsupported id.
DTypeLayout require_layout(DType t);

std::string_view dtype_name(DType t);

// Bytes taken by `n_elements` contiguous elements; throws when n is not a whole number of blocks.
int64_t dtype_row_bytes(DType t, int64_t n_elements);

// True for the block-quantized formats (everything but F32/F16/BF16).
bool dtype_is_quantized(DType t);

// True for the formats gemmax makes at load time (kQ5_0x4): a file that declares one is
// malformed.
bool dtype_is_repacked(DType t);

}  // namespace gemmax
