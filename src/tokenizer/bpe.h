// Internals of the tokenizer: the merge lookup table, the BPE merge loop over one word, and the
// leftmost-longest matcher for added tokens. Not part of the public API; tests use them directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/vocabulary.h"

namespace gemmax {

// (left id, right id) -> (rank, merged id). The merge loop does one lookup per new adjacent pair,
// so this must be fast and compact: one 64-bit word per slot holds the pair and its rank (each id
// in as many bits as the largest id needs, the rank + 1 in the rest; 0 is an empty slot), probed
// linearly at a load factor of at most 1/2, and the merged ids are a separate array by rank (read
// only when a merge happens). Gemma 3's 514906 merges: 8 MB of slots + 2 MB of results (16-byte
// slots holding the result took 16 MB).
class BpeMergeTable {
 public:
  // merges[i] merges into results[i] with rank i. A pair listed twice keeps its last rank, as HF's
  // hash-map construction does. Throws std::invalid_argument for a negative id or sizes that do
  // not match, std::length_error when two ids and the rank do not fit in 64 bits.
  BpeMergeTable(const std::vector<std::pair<int32_t, int32_t>>& merges,
                const std::vector<int32_t>& results);

  // The rank of merging (left, right), if they merge.
  std::optional<int32_t> rank(int32_t left, int32_t right) const {
    const auto l = static_cast<uint32_t>(left);
    const auto r = static_cast<uint32_t>(right);
    if (((l | r) >> id_bits_) != 0) return std::nullopt;  // negative, or larger than any merged id
    const uint64_t pair = (uint64_t{l} << id_bits_) | r;
    for (size_t slot = hash(pair) & mask_;; slot = (slot + 1) & mask_) {
      const uint64_t s = slots_[slot];
      if (s == 0) return std::nullopt;
      if ((s >> rank_bits_) == pair) return static_cast<int32_t>((s & rank_mask_) - 1);
    }
  }
  // The id the merge of `rank` makes (unchecked: a rank rank() returned).
  int32_t result(int32_t rank) const { return results_[static_cast<size_t>(rank)]; }
  size_t size() const { return results_.size(); }
  size_t memory_bytes() const {
    return slots_.capacity() * sizeof(uint64_t) + results_.capacity() * sizeof(int32_t);
  }

 private:
  static size_t hash(uint64_t key) {
    key ^= key >> 31;
    key *= 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(key ^ (key >> 29));
  }
  unsigned id_bits_ = 1;
  unsigned rank_bits_ = 62;
  uint64_t rank_mask_ = 0;
  std::vector<uint64_t> slots_;
  std::vector<int32_t> results_;  // rank -> merged id
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
  AddedTokenMatcher(const Vocabulary& tokens, const std::vector<uint8_t>& added,
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
