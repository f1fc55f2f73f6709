// Checks the "no allocation in steady state" promise by counting calls to the global operator new,
// which this test binary replaces (a program may replace it; the count covers every new in the
// process).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "kv_cache/paged_kv_cache.h"
#include "kv_test_util.h"

namespace {
std::atomic<long> g_news{0};  // test instrumentation only
}  // namespace

void* operator new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// noinline: once inlined, GCC pairs the std::free with the caller's `new` and warns
// (-Wmismatched-new-delete) although both sides are replaced consistently here.
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace gemmax {
namespace {

using testing::kv_row;

TEST(SteadyState, StoreAndBlocksDoNotAllocate) {
  const auto p = testing::small_params(DType::kF16, {true, false}, 8);
  PagedKVCache c(p, 64);
  const SeqId id = c.add_sequence();
  testing::step(c, id, 20);
  c.reserve(id, 1);
  const auto k = kv_row(p, id, 0, 20, false);
  const auto v = kv_row(p, id, 0, 20, true);
  std::vector<KVBlock> out;
  c.blocks(id, 1, 0, 20, out);  // warm-up sizes `out`
  const long before = g_news.load();
  for (int layer = 0; layer < 2; ++layer) c.store(id, layer, 20, k.data(), v.data());
  c.blocks(id, 1, 0, 21, out);
  c.blocks(id, 0, 13, 21, out);
  EXPECT_EQ(g_news.load() - before, 0);
  EXPECT_EQ(out.size(), 3u);  // 13..15, 16..19, 20
}

TEST(SteadyState, SlidingDecodeLoopDoesNotAllocate) {
  // With only sliding layers the page tables stop growing: after warm-up a whole decode step
  // (reserve, store, blocks, commit) runs without touching the heap.
  const auto p = testing::small_params(DType::kBF16, {true, true}, 10);
  PagedKVCache c(p, 16);
  const SeqId id = c.add_sequence();
  for (int i = 0; i < 100; ++i) testing::step(c, id, 1);
  const auto k = kv_row(p, id, 0, 0, false);
  std::vector<KVBlock> out;
  out.reserve(8);
  const long before = g_news.load();
  for (int i = 0; i < 200; ++i) {
    const int64_t pos = c.length(id);
    c.reserve(id, 1);
    for (int layer = 0; layer < 2; ++layer) {
      c.store(id, layer, pos, k.data(), k.data());
      c.blocks(id, layer, pos + 1 - 10, pos + 1, out);
    }
    c.commit(id, 1);
  }
  EXPECT_EQ(g_news.load() - before, 0);
  EXPECT_EQ(c.length(id), 300);
}

}  // namespace
}  // namespace gemmax
