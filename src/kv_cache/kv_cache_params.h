// Shape of the paged KV cache: which element type it stores, how many heads and layers, how many
// tokens a page holds and which layers use sliding-window attention (Gemma 3 interleaves 5 local :
// 1 global).
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace gemmax {

struct KVCacheParams {
  DType dtype = DType::kF32;  // kF32, kF16 or kBF16; others are rejected by validate()
  int n_kv_heads = 0;
  int head_dim = 0;
  int page_size = 16;  // tokens per page
  int num_layers = 0;
  std::vector<bool> layer_is_sliding;  // size num_layers
  int sliding_window =
      0;  // positions a sliding layer keeps (query at q sees keys k with q - k < window)

  // Throws std::invalid_argument naming the bad field.
  void validate() const;
  // Bytes of one element of `dtype` (4 or 2).
  int64_t element_bytes() const;
  // Bytes of one K row (or one V row): n_kv_heads * head_dim elements.
  int64_t row_bytes() const;
  // K and V of one token in one layer.
  int64_t bytes_per_token_per_layer() const;
  // One page of one layer: K and V for page_size tokens.
  int64_t page_bytes() const;
  // One kv head's K (or V) rows of one page: page_size * head_dim elements.
  int64_t run_bytes() const;
  // run_bytes() rounded up to 64, so every run starts on a cache line.
  int64_t run_stride() const;
  // Pool bytes per page: 2 * n_kv_heads runs. Equal to page_bytes() for realistic shapes.
  int64_t page_stride() const;
  bool is_sliding(int layer) const { return layer_is_sliding[static_cast<size_t>(layer)]; }
};

}  // namespace gemmax
