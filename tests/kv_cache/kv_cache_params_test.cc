#include "kv_cache/kv_cache_params.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "kv_cache/paged_kv_cache.h"

namespace gemmax {
namespace {

KVCacheParams good() {
  KVCacheParams p;
  p.dtype = DType::kF32;
  p.n_kv_heads = 2;
  p.head_dim = 8;
  p.page_size = 16;
  p.num_layers = 3;
  p.layer_is_sliding = {true, false, true};
  p.sliding_window = 32;
  return p;
}

// The exception must name the field, so a config mistake is found without a debugger.
void expect_rejects(const KVCacheParams& p, const std::string& field) {
  try {
    p.validate();
    ADD_FAILURE() << "accepted bad " << field;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(KVCacheParams, AcceptsGoodAndRejectsEachBadField) {
  EXPECT_NO_THROW(good().validate());
  auto p = good();
  p.dtype = DType::kQ8_0;
  expect_rejects(p, "dtype");
  p = good();
  p.n_kv_heads = 0;
  expect_rejects(p, "n_kv_heads");
  p = good();
  p.head_dim = -4;
  expect_rejects(p, "head_dim");
  p = good();
  p.page_size = 0;
  expect_rejects(p, "page_size");
  p = good();
  p.num_layers = 0;
  p.layer_is_sliding.clear();
  expect_rejects(p, "num_layers");
  p = good();
  p.layer_is_sliding.push_back(false);
  expect_rejects(p, "layer_is_sliding");
  p = good();
  p.sliding_window = 0;
  expect_rejects(p, "sliding_window");
  p = good();
  p.layer_is_sliding = {false, false, false};
  p.sliding_window = 0;  // irrelevant without sliding layers
  EXPECT_NO_THROW(p.validate());
  p.head_dim = 1 << 30;  // would overflow page size arithmetic
  expect_rejects(p, "head_dim");
}

TEST(KVCacheParams, SizesFollowTheLayout) {
  auto p = good();
  // 2 heads x 8 dims x 4 bytes, K and V.
  EXPECT_EQ(p.bytes_per_token_per_layer(), 2 * 2 * 8 * 4);
  EXPECT_EQ(p.page_bytes(), 16 * 2 * 2 * 8 * 4);
  EXPECT_EQ(p.run_bytes(), 16 * 8 * 4);
  EXPECT_EQ(p.page_stride(), p.page_bytes());
  p.dtype = DType::kBF16;
  EXPECT_EQ(p.bytes_per_token_per_layer(), 2 * 2 * 8 * 2);
  p.dtype = DType::kF16;
  p.n_kv_heads = 1;
  p.head_dim = 3;
  p.page_size = 1;
  EXPECT_EQ(p.page_bytes(), 12);
  EXPECT_EQ(p.run_bytes(), 6);
  EXPECT_EQ(p.run_stride(), 64);    // padded so every run starts on a cache line
  EXPECT_EQ(p.page_stride(), 128);  // K and V runs of the one kv head
}

TEST(KVCacheParams, PagesForBytes) {
  const auto p = good();
  EXPECT_EQ(PagedKVCache::pages_for_bytes(p, 0), 0);
  EXPECT_EQ(PagedKVCache::pages_for_bytes(p, p.page_bytes() * 10 + p.page_bytes() - 1), 10);
  EXPECT_THROW(PagedKVCache::pages_for_bytes(p, -1), std::invalid_argument);
}

}  // namespace
}  // namespace gemmax
