// Token text -> id over a vocabulary held elsewhere: one flat open-addressing table of ids (and
// the texts' hashes), probed linearly. For a 262144-token vocabulary it is ~4 MB where a
// std::unordered_map<std::string_view, int32_t> took ~14 MB in 262144 separately allocated nodes,
// and a lookup is one or two cache misses instead of a bucket, a node and a string: building the
// tokenizer does ~2M lookups (merges derived from scores), which took ~0.35 s of a 0.8 s load.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gemmax {

class TokenIndex {
 public:
  TokenIndex() = default;
  // Indexes tokens[0..n); a text that appears twice keeps its first id. The strings are read at
  // every lookup: they must outlive the index and stay where they are (the vector holding them
  // may be moved, not resized).
  explicit TokenIndex(const std::vector<std::string>& tokens);

  // The id of `text`, or -1.
  int32_t find(std::string_view text) const;
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t hash = 0;
    int32_t id = -1;  // -1: empty
  };
  const std::string* tokens_ = nullptr;
  size_t size_ = 0;
  std::vector<Slot> slots_;  // power-of-two size, at most 2/3 full
};

}  // namespace gemmax
