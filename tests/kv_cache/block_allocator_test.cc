#include "kv_cache/block_allocator.h"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

namespace gemmax {
namespace {

TEST(BlockAllocator, HandsOutEveryIdOnceThenThrows) {
  BlockAllocator a(5);
  std::set<BlockAllocator::BlockId> seen;
  for (int i = 0; i < 5; ++i) {
    const auto id = a.allocate();
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 5);
    EXPECT_TRUE(seen.insert(id).second) << "id " << id << " handed out twice";
    EXPECT_TRUE(a.is_allocated(id));
  }
  EXPECT_EQ(a.free_blocks(), 0);
  EXPECT_EQ(a.used_blocks(), 5);
  EXPECT_THROW(a.allocate(), std::runtime_error);
  EXPECT_EQ(a.used_blocks(), 5);  // the failed call changed nothing
}

TEST(BlockAllocator, ReusesFreedIds) {
  BlockAllocator a(3);
  const auto x = a.allocate();
  const auto y = a.allocate();
  const auto z = a.allocate();
  a.free(y);
  EXPECT_FALSE(a.is_allocated(y));
  EXPECT_EQ(a.free_blocks(), 1);
  EXPECT_EQ(a.allocate(), y);  // the only free id
  a.free(x);
  a.free(z);
  EXPECT_EQ(a.free_blocks(), 2);
  const auto p = a.allocate();
  const auto q = a.allocate();
  EXPECT_EQ(std::set<BlockAllocator::BlockId>({p, q}), std::set<BlockAllocator::BlockId>({x, z}));
}

TEST(BlockAllocator, DetectsDoubleFreeAndForeignIds) {
  BlockAllocator a(4);
  const auto id = a.allocate();
  a.free(id);
  EXPECT_THROW(a.free(id), std::invalid_argument);
  EXPECT_EQ(a.free_blocks(), 4);  // the rejected free did not push a duplicate
  EXPECT_THROW(a.free(-1), std::invalid_argument);
  EXPECT_THROW(a.free(4), std::invalid_argument);
  const auto never = (id + 1) % 4;
  EXPECT_THROW(a.free(never), std::invalid_argument);  // valid range but never allocated
  // Four distinct ids still come out: the free list was not corrupted by the bad frees.
  std::set<BlockAllocator::BlockId> seen;
  for (int i = 0; i < 4; ++i) seen.insert(a.allocate());
  EXPECT_EQ(seen.size(), 4u);
}

TEST(BlockAllocator, EmptyAndInvalidCapacity) {
  BlockAllocator empty(0);
  EXPECT_EQ(empty.total_blocks(), 0);
  EXPECT_THROW(empty.allocate(), std::runtime_error);
  EXPECT_THROW(BlockAllocator(-1), std::invalid_argument);
  EXPECT_THROW(BlockAllocator(int64_t{1} << 40), std::invalid_argument);
}

}  // namespace
}  // namespace gemmax
