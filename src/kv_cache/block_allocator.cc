#include "kv_cache/block_allocator.h"

#include <limits>
#include <stdexcept>
#include <string>

namespace gemmax {

BlockAllocator::BlockAllocator(int64_t num_blocks) {
  if (num_blocks < 0 || num_blocks > std::numeric_limits<BlockId>::max()) {
    throw std::invalid_argument("BlockAllocator: num_blocks must be in [0, 2^31), got " +
                                std::to_string(num_blocks));
  }
  allocated_.assign(static_cast<size_t>(num_blocks), 0);
  free_list_.reserve(static_cast<size_t>(num_blocks));
  // Pushed in reverse so the first allocations hand out 0, 1, 2, ... (contiguous, easy to debug).
  for (int64_t i = num_blocks - 1; i >= 0; --i) free_list_.push_back(static_cast<BlockId>(i));
}

BlockAllocator::BlockId BlockAllocator::allocate() {
  if (free_list_.empty()) {
    throw std::runtime_error("BlockAllocator: all " + std::to_string(total_blocks()) +
                             " blocks are in use");
  }
  const BlockId id = free_list_.back();
  free_list_.pop_back();
  allocated_[static_cast<size_t>(id)] = 1;
  return id;
}

void BlockAllocator::free(BlockId id) {
  if (id < 0 || id >= total_blocks()) {
    throw std::invalid_argument("BlockAllocator: block id " + std::to_string(id) +
                                " out of range [0, " + std::to_string(total_blocks()) + ")");
  }
  if (!allocated_[static_cast<size_t>(id)]) {
    throw std::invalid_argument("BlockAllocator: double free of block " + std::to_string(id));
  }
  allocated_[static_cast<size_t>(id)] = 0;
  free_list_.push_back(id);  // within capacity: never reallocates
}

bool BlockAllocator::is_allocated(BlockId id) const {
  return id >= 0 && id < total_blocks() && allocated_[static_cast<size_t>(id)] != 0;
}

}  // namespace gemmax
