#include "kv_cache/kv_cache_params.h"

#include <stdexcept>
#include <string>

namespace gemmax {
namespace {

// Bounds that keep every size product below 2^56 so no int64 arithmetic in the cache can overflow.
constexpr int kMaxHeads = 1 << 12;
constexpr int kMaxHeadDim = 1 << 16;
constexpr int kMaxPageSize = 1 << 16;
constexpr int kMaxLayers = 1 << 12;

void require(bool ok, const char* field, const std::string& why) {
  if (!ok) throw std::invalid_argument(std::string("KVCacheParams.") + field + ": " + why);
}

void require_in_range(int value, int lo, int hi, const char* field) {
  require(value >= lo && value <= hi, field,
          "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
              std::to_string(value));
}

}  // namespace

void KVCacheParams::validate() const {
  require(dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16, "dtype",
          "must be F32, F16 or BF16, got " + std::string(dtype_name(dtype)));
  require_in_range(n_kv_heads, 1, kMaxHeads, "n_kv_heads");
  require_in_range(head_dim, 1, kMaxHeadDim, "head_dim");
  require_in_range(page_size, 1, kMaxPageSize, "page_size");
  require_in_range(num_layers, 1, kMaxLayers, "num_layers");
  require(layer_is_sliding.size() == static_cast<size_t>(num_layers), "layer_is_sliding",
          "has " + std::to_string(layer_is_sliding.size()) + " entries for num_layers " +
              std::to_string(num_layers));
  bool any_sliding = false;
  for (bool s : layer_is_sliding) any_sliding = any_sliding || s;
  // A window of 0 would mean a query sees nothing, not even itself.
  require(sliding_window >= (any_sliding ? 1 : 0), "sliding_window",
          any_sliding
              ? "must be >= 1 when a layer is sliding, got " + std::to_string(sliding_window)
              : "must be >= 0, got " + std::to_string(sliding_window));
}

int64_t KVCacheParams::element_bytes() const { return dtype == DType::kF32 ? 4 : 2; }

int64_t KVCacheParams::row_bytes() const {
  return static_cast<int64_t>(n_kv_heads) * head_dim * element_bytes();
}

int64_t KVCacheParams::bytes_per_token_per_layer() const { return 2 * row_bytes(); }

int64_t KVCacheParams::page_bytes() const { return page_size * bytes_per_token_per_layer(); }

int64_t KVCacheParams::run_bytes() const {
  return static_cast<int64_t>(page_size) * head_dim * element_bytes();
}

int64_t KVCacheParams::run_stride() const {
  constexpr int64_t kAlign = 64;
  return (run_bytes() + kAlign - 1) / kAlign * kAlign;
}

int64_t KVCacheParams::page_stride() const { return 2 * n_kv_heads * run_stride(); }

}  // namespace gemmax
