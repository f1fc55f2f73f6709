#include "tokenizer/token_index.h"

#include <bit>
#include <functional>

namespace gemmax {

namespace {
uint64_t hash_of(std::string_view s) { return std::hash<std::string_view>{}(s); }
}  // namespace

TokenIndex::TokenIndex(const std::vector<std::string>& tokens) : tokens_(tokens.data()) {
  // Load factor 1/3 to 2/3: 524288 slots (4 MB) for 262144 tokens.
  slots_.resize(std::bit_ceil(tokens.size() + tokens.size() / 2 + 1));
  const size_t mask = slots_.size() - 1;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const uint64_t h = hash_of(tokens[i]);
    for (size_t s = h & mask;; s = (s + 1) & mask) {
      Slot& slot = slots_[s];
      if (slot.id < 0) {
        slot = {static_cast<uint32_t>(h >> 32), static_cast<int32_t>(i)};
        ++size_;
        break;
      }
      if (slot.hash == static_cast<uint32_t>(h >> 32) &&
          tokens[static_cast<size_t>(slot.id)] == tokens[i])
        break;
    }
  }
}

int32_t TokenIndex::find(std::string_view text) const {
  if (slots_.empty()) return -1;
  const uint64_t h = hash_of(text);
  const size_t mask = slots_.size() - 1;
  for (size_t s = h & mask;; s = (s + 1) & mask) {
    const Slot& slot = slots_[s];
    if (slot.id < 0) return -1;
    if (slot.hash == static_cast<uint32_t>(h >> 32) &&
        tokens_[static_cast<size_t>(slot.id)] == text)
      return slot.id;
  }
}

}  // namespace gemmax
