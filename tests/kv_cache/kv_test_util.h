// Helpers shared by the KV cache tests: deterministic K/V rows and a reader that decodes blocks().
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "kv_cache/paged_kv_cache.h"
#include "tensor/half.h"

namespace gemmax::testing {

// A value that depends on every coordinate, so a row landing in the wrong sequence, layer, position
// or K/V half is detected. Magnitudes lie in [1/64, 4): normal in f16 and bf16, so relative
// rounding bounds apply.
inline float kv_value(SeqId seq, int layer, int64_t pos, int64_t i, bool is_v) {
  uint64_t h = static_cast<uint64_t>(seq) * 0x9E3779B97F4A7C15ull ^
               static_cast<uint64_t>(layer) * 0xC2B2AE3D27D4EB4Full ^
               static_cast<uint64_t>(pos) * 0x165667B19E3779F9ull ^
               static_cast<uint64_t>(i) * 0xD6E8FEB86659FD93ull ^ (is_v ? 0xABCDEFull : 0);
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  const float mag = 1.0f / 64 + static_cast<float>(h % 100000) / 100000.0f * (4.0f - 1.0f / 64);
  return (h >> 40) & 1 ? -mag : mag;
}

inline std::vector<float> kv_row(const KVCacheParams& p, SeqId seq, int layer, int64_t pos,
                                 bool is_v) {
  const int64_t n = static_cast<int64_t>(p.n_kv_heads) * p.head_dim;
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) row[static_cast<size_t>(i)] = kv_value(seq, layer, pos, i, is_v);
  return row;
}

// Stores the rows of positions [length, length + n) in every layer (after reserving them).
inline void store_step(PagedKVCache& c, SeqId id, int64_t n) {
  const auto& p = c.params();
  for (int layer = 0; layer < p.num_layers; ++layer) {
    for (int64_t pos = c.length(id); pos < c.length(id) + n; ++pos) {
      const auto k = kv_row(p, id, layer, pos, false);
      const auto v = kv_row(p, id, layer, pos, true);
      c.store(id, layer, pos, k.data(), v.data());
    }
  }
}

// reserve + store + commit of n positions: one prefill chunk or decode step.
inline void step(PagedKVCache& c, SeqId id, int64_t n) {
  c.reserve(id, n);
  store_step(c, id, n);
  c.commit(id, n);
}

inline float decode(DType t, const std::byte* p, int64_t i) {
  if (t == DType::kF32) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return t == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// Rows [begin, end) of one layer read back through blocks(), decoded to f32, concatenated.
inline std::vector<float> read_rows(const PagedKVCache& c, SeqId id, int layer, int64_t begin,
                                    int64_t end, bool is_v) {
  const auto& p = c.params();
  std::vector<KVBlock> blocks;
  c.blocks(id, layer, begin, end, blocks);
  std::vector<float> out;
  for (const KVBlock& b : blocks)
    for (int64_t i = 0; i < b.n; ++i)
      for (int64_t h = 0; h < p.n_kv_heads; ++h) {
        const std::byte* row = is_v ? b.v_row(i, h) : b.k_row(i, h);
        for (int64_t d = 0; d < p.head_dim; ++d) out.push_back(decode(p.dtype, row, d));
      }
  return out;
}

inline KVCacheParams small_params(DType dtype, std::vector<bool> sliding, int window) {
  KVCacheParams p;
  p.dtype = dtype;
  p.n_kv_heads = 2;
  p.head_dim = 4;
  p.page_size = 4;
  p.num_layers = static_cast<int>(sliding.size());
  p.layer_is_sliding = std::move(sliding);
  p.sliding_window = window;
  return p;
}

}  // namespace gemmax::testing
