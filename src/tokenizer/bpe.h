// Internals of the tokenizer: the merge lookup table, the BPE merge loop over one word, and the
// leftmost-longest matcher for added tokens. Not part of the public API; tests use them directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gemmax {

// (left id, right id) -> (rank, merged id), open addressing with linear probing: the merge loop
// does one lookup per new adjacent pair, so this must be fast and compact (~8 bytes of key per
// slot).
class BpeMergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t result;
  };

  // merges[i] merges into results[i] with rank i. A pair listed twice keeps its last rank, as HF's
  // hash-map construction does.
  BpeMergeTable(const std::vector<std::pair<int32_t, int32_t>>& merges,
                const std::vector<int32_t>& results);

  const Merge* find(int32_t left, int32_t right) const {
    const uint64_t key = pack(left, right);
    for (size_t slot = hash(key) & mask_;; slot = (slot + 1) & mask_) {
      const Slot& s = slots_[slot];
      if (s.key == key) return &s.merge;
      if (s.key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{};
  };
  static uint64_t pack(int32_t l, int32_t r) {
    return (uint64_t{static_cast<uint32_t>(l)} << 32) | static_cast<uint32_t>(r);
  }
  static size_t hash(uint64_t key) {
    key ^= key >> 31;
    key *= 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(key ^ (key >> 29));
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Applies merges to `ids` (one word's initial symbols) in place: repeatedly the adjacent pair with
// the lowest rank, leftmost on ties. Heap of candidate pairs + doubly linked symbols: O(n log n).
void bpe_merge(const BpeMergeTable& table, std::vector<int32_t>& ids);

// Finds added tokens in raw text, leftmost-longest (the first position where any token starts wins,
// then the longest token there), as HF's added-vocabulary split does.
class AddedTokenMatcher {
 public:
  // `tokens[i]` is matched for every id i with added[i] set; `special` marks the ones that
  // parse_special=false turns off.
  AddedTokenMatcher(const std::vector<std::string>& tokens, const std::vector<uint8_t>& added,
                    const std::vector<uint8_t>& special);

  struct Match {
    size_t begin = 0;
    size_t length = 0;
    int32_t id = -1;
  };
  // The leftmost-longest match at or after `from`; id -1 when there is none.
  Match find(std::string_view text, size_t from, bool parse_special) const;

 private:
  struct Node {
    int32_t id = -1;        // token ending here (any)
    int32_t plain_id = -1;  // non-special token ending here
  };
  int32_t child(int32_t node, unsigned char byte) const {
    auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
    return it == edges_.end() ? -1 : it->second;
  }
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child
  bool first_byte_[256] = {};
};

}  // namespace gemmax
