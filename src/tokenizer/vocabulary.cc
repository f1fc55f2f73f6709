#include "tokenizer/vocabulary.h"

#include <bit>
#include <functional>
#include <stdexcept>

namespace gemmax {

namespace {
uint64_t hash_of(std::string_view s) { return std::hash<std::string_view>{}(s); }
}  // namespace

Vocabulary::Vocabulary(const std::vector<std::string>& tokens) {
  size_t total = 0;
  for (const std::string& t : tokens) total += t.size();
  if (total > UINT32_MAX || tokens.size() > INT32_MAX)
    throw std::length_error("vocabulary of " + std::to_string(tokens.size()) + " tokens and " +
                            std::to_string(total) + " bytes of text is too large to index");
  text_.reserve(total);
  ends_.reserve(tokens.size());
  for (const std::string& t : tokens) {
    text_.insert(text_.end(), t.begin(), t.end());
    ends_.push_back(static_cast<uint32_t>(text_.size()));
  }
  // Load factor 1/3 to 2/3: 524288 slots (4 MB) for 262145 tokens.
  slots_.resize(std::bit_ceil(tokens.size() + tokens.size() / 2 + 1));
  const size_t mask = slots_.size() - 1;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const uint64_t h = hash_of(tokens[i]);
    for (size_t s = h & mask;; s = (s + 1) & mask) {
      Slot& slot = slots_[s];
      if (slot.id < 0) {
        slot = {static_cast<uint32_t>(h >> 32), static_cast<int32_t>(i)};
        ++distinct_;
        break;
      }
      if (slot.hash == static_cast<uint32_t>(h >> 32) &&
          text(static_cast<size_t>(slot.id)) == tokens[i])
        break;
    }
  }
}

int32_t Vocabulary::find(std::string_view query) const {
  if (slots_.empty()) return -1;
  const uint64_t h = hash_of(query);
  const size_t mask = slots_.size() - 1;
  for (size_t s = h & mask;; s = (s + 1) & mask) {
    const Slot& slot = slots_[s];
    if (slot.id < 0) return -1;
    if (slot.hash == static_cast<uint32_t>(h >> 32) && text(static_cast<size_t>(slot.id)) == query)
      return slot.id;
  }
}

}  // namespace gemmax
