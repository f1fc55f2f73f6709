// Fixed-capacity allocator of page ids [0, num_blocks): a LIFO free list (recently freed pages are
// the warmest in cache) plus an ownership bitmap so double frees and foreign ids are caught, not
// silently corrupting the list. All storage is sized at construction; allocate/free never allocate
// memory.
#pragma once

#include <cstdint>
#include <vector>

namespace gemmax {

class BlockAllocator {
 public:
  using BlockId = int32_t;

  explicit BlockAllocator(int64_t num_blocks);

  // A free block id; throws std::runtime_error when none is left (callers check free_blocks() first
  // when they need all-or-nothing semantics).
  BlockId allocate();
  // Returns `id` to the pool; throws std::invalid_argument for an id out of range or not allocated
  // (double free).
  void free(BlockId id);
  bool is_allocated(BlockId id) const;

  int64_t free_blocks() const { return static_cast<int64_t>(free_list_.size()); }
  int64_t total_blocks() const { return static_cast<int64_t>(allocated_.size()); }
  int64_t used_blocks() const { return total_blocks() - free_blocks(); }

 private:
  std::vector<BlockId> free_list_;  // stack of free ids; capacity == total_blocks()
  std::vector<uint8_t> allocated_;  // 1 while the id is handed out
};

}  // namespace gemmax
