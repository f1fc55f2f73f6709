#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "kv_cache/paged_kv_cache.h"
#include "kv_test_util.h"

namespace gemmax {
namespace {

using testing::kv_row;
using testing::read_rows;
using testing::small_params;
using testing::step;

// Brute force: pages of a sliding layer holding at least one position >= length - window, i.e. one
// a future query (or the rule "free pages whose positions are all < length - window") still needs.
int64_t live_sliding_pages(int64_t length, int64_t window, int64_t page) {
  int64_t n = 0;
  for (int64_t p = 0; p * page < length; ++p) {
    if ((p + 1) * page - 1 >= length - window) ++n;
  }
  return n;
}

void expect_rows(const PagedKVCache& c, SeqId id, int layer, int64_t begin, int64_t end) {
  const auto got = read_rows(c, id, layer, begin, end, /*is_v=*/true);
  const size_t row = static_cast<size_t>(c.params().n_kv_heads * c.params().head_dim);
  ASSERT_EQ(got.size(), static_cast<size_t>(end - begin) * row);
  for (int64_t pos = begin; pos < end; ++pos) {
    const auto want = kv_row(c.params(), id, layer, pos, true);
    for (size_t i = 0; i < row; ++i) {
      ASSERT_EQ(got[static_cast<size_t>(pos - begin) * row + i], want[i]) << pos;
    }
  }
}

TEST(SlidingWindow, DecodeKeepsOnlyTheWindowInSlidingLayers) {
  constexpr int kWindow = 10;
  const auto p = small_params(DType::kF32, {true, false, true}, kWindow);  // page_size 4
  PagedKVCache c(p, 200);
  const SeqId id = c.add_sequence();
  const int64_t max_sliding = (kWindow + p.page_size - 1) / p.page_size + 1;
  std::vector<KVBlock> out;
  for (int64_t len = 1; len <= 120; ++len) {
    step(c, id, 1);
    const int64_t sliding = live_sliding_pages(len, kWindow, p.page_size);
    ASSERT_EQ(c.pages_held(id, 0), sliding) << len;
    ASSERT_EQ(c.pages_held(id, 2), sliding) << len;
    ASSERT_LE(c.pages_held(id, 0), max_sliding);
    ASSERT_EQ(c.pages_held(id, 1), (len + 3) / 4) << len;  // the global layer grows
    ASSERT_EQ(c.used_pages(), 2 * sliding + (len + 3) / 4);
    ASSERT_EQ(c.kv_bytes(id), c.used_pages() * p.page_bytes());
    ASSERT_EQ(PagedKVCache::kv_bytes_for_length(p, len), c.kv_bytes(id)) << len;
    ASSERT_EQ(PagedKVCache::pages_for_length(p, len), c.used_pages()) << len;
    // The whole window of the next query is still readable, and correct, in both sliding layers.
    const int64_t window_begin = std::max<int64_t>(0, len - kWindow);
    ASSERT_LE(c.first_retained_pos(id, 0), window_begin);
    expect_rows(c, id, 0, window_begin, len);
    expect_rows(c, id, 2, window_begin, len);
    if (c.first_retained_pos(id, 0) > 0) {
      EXPECT_THROW(c.blocks(id, 0, c.first_retained_pos(id, 0) - 1, len, out), std::out_of_range);
    }
  }
  EXPECT_EQ(c.first_retained_pos(id, 1), 0);
  expect_rows(c, id, 1, 0, 120);  // the global layer kept everything
}

TEST(SlidingWindow, LongPrefillHoldsAllNewPagesUntilCommit) {
  const auto p = small_params(DType::kF32, {true}, 10);
  PagedKVCache c(p, 20);
  const SeqId id = c.add_sequence();
  // A prefill chunk longer than the window: its own queries attend inside it, so every page is
  // needed until the step commits.
  EXPECT_EQ(c.pages_needed(id, 37), 10);
  c.reserve(id, 37);
  testing::store_step(c, id, 37);
  EXPECT_EQ(c.pages_held(id, 0), 10);
  c.commit(id, 37);
  EXPECT_EQ(c.pages_held(id, 0), live_sliding_pages(37, 10, 4));
  EXPECT_EQ(c.free_pages(), 20 - live_sliding_pages(37, 10, 4));
  expect_rows(c, id, 0, 27, 37);
}

TEST(SlidingWindow, EvictedPagesReturnToThePool) {
  // A sliding-only model decodes forever in a pool sized for its window plus one step.
  const auto p = small_params(DType::kBF16, {true, true}, 10);
  PagedKVCache c(p, 2 * 5);
  const SeqId id = c.add_sequence();
  for (int i = 0; i < 1000; ++i) ASSERT_NO_THROW(step(c, id, 1)) << i;
  EXPECT_EQ(c.length(id), 1000);
  EXPECT_LE(c.used_pages(), 2 * 4);
}

TEST(SlidingWindow, TruncateRefusesToResurrectEvictedPositions) {
  const auto p = small_params(DType::kF32, {true, false}, 10);
  PagedKVCache c(p, 40);
  const SeqId id = c.add_sequence();
  step(c, id, 33);
  const int64_t used = c.used_pages();
  // Positions < 33 - 10 = 23 are dead, so pages 0..4 (positions 0..19) were freed.
  EXPECT_EQ(c.first_retained_pos(id, 0), 20);
  // At length 25 the next query would attend 16..25, part of the evicted pages.
  EXPECT_THROW(c.truncate(id, 25), std::invalid_argument);
  EXPECT_EQ(c.length(id), 33);
  EXPECT_EQ(c.used_pages(), used);
  c.truncate(id, 30);  // its window starts at 20: still held
  EXPECT_EQ(c.length(id), 30);
  expect_rows(c, id, 0, 20, 30);
  expect_rows(c, id, 1, 0, 30);
  step(c, id, 5);
  expect_rows(c, id, 0, 25, 35);
}

TEST(SlidingWindow, Gemma3_270mSizes) {
  // Gemma 3 270M: 18 layers, every 6th global, window 512, 1 KV head of 256 dims.
  KVCacheParams p;
  p.n_kv_heads = 1;
  p.head_dim = 256;
  p.page_size = 16;
  p.num_layers = 18;
  p.layer_is_sliding.assign(18, true);
  for (int l = 5; l < 18; l += 6) p.layer_is_sliding[static_cast<size_t>(l)] = false;
  p.sliding_window = 512;
  // f32 page: 16 tokens x (K + V) x 256 x 4 bytes = 32 KiB.
  ASSERT_EQ(p.page_bytes(), 32768);
  // 512 tokens: all 18 layers hold 32 pages.
  EXPECT_EQ(PagedKVCache::kv_bytes_for_length(p, 512), 18 * 32 * 32768);
  // 4096: 3 global x 256 pages + 15 sliding x 32 (window boundary on a page boundary).
  EXPECT_EQ(PagedKVCache::kv_bytes_for_length(p, 4096), (3 * 256 + 15 * 32) * 32768);
  EXPECT_EQ(PagedKVCache::kv_bytes_for_length(p, 32768), (3 * 2048 + 15 * 32) * 32768);
  // 4100: the window [3588, 4100) straddles pages 224..256: 33 pages per sliding layer.
  EXPECT_EQ(PagedKVCache::kv_bytes_for_length(p, 4100), (3 * 257 + 15 * 33) * int64_t{32768});
  p.dtype = DType::kBF16;
  EXPECT_EQ(PagedKVCache::kv_bytes_for_length(p, 32768), (3 * 2048 + 15 * 32) * 16384);
}

}  // namespace
}  // namespace gemmax
