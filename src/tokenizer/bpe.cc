#include "tokenizer/bpe.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <optional>
#include <queue>
#include <stdexcept>
#include <string>

namespace gemmax {

BpeMergeTable::BpeMergeTable(const std::vector<std::pair<int32_t, int32_t>>& merges,
                             const std::vector<int32_t>& results)
    : results_(results) {
  if (results.size() != merges.size())
    throw std::invalid_argument("BPE merge table: " + std::to_string(merges.size()) +
                                " merges but " + std::to_string(results.size()) + " results");
  int32_t largest = 0;
  for (const auto& [l, r] : merges) {
    if (l < 0 || r < 0) throw std::invalid_argument("BPE merge table: a merge has a negative id");
    largest = std::max({largest, l, r});
  }
  id_bits_ = std::max(1u, static_cast<unsigned>(std::bit_width(static_cast<uint32_t>(largest))));
  rank_bits_ = 64 - 2 * id_bits_;
  rank_mask_ = (uint64_t{1} << rank_bits_) - 1;
  if (merges.size() >= rank_mask_)
    throw std::length_error("BPE merge table: " + std::to_string(merges.size()) +
                            " merges of ids up to " + std::to_string(largest) +
                            " do not fit a 64-bit slot");
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, merges.size() * 2));
  slots_.assign(capacity, 0);
  mask_ = capacity - 1;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const uint64_t pair = (uint64_t{static_cast<uint32_t>(merges[rank].first)} << id_bits_) |
                          static_cast<uint32_t>(merges[rank].second);
    size_t slot = hash(pair) & mask_;
    while (slots_[slot] != 0 && (slots_[slot] >> rank_bits_) != pair) slot = (slot + 1) & mask_;
    slots_[slot] = (pair << rank_bits_) | (rank + 1);
  }
}

void bpe_merge(const BpeMergeTable& table, std::vector<int32_t>& ids) {
  const size_t n = ids.size();
  if (n < 2) return;
  // Symbols form a doubly linked list over positions; a merge keeps the left position and kills the
  // right one (id -1), so a position's order never changes and "leftmost" is "smallest position".
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  // Candidates are (rank << 32 | left position): the smallest is the lowest rank, leftmost on ties.
  // Stale candidates are not removed; they are recognised when popped.
  std::vector<uint64_t> initial;
  initial.reserve(n);
  auto candidate = [&](int32_t left) -> std::optional<uint64_t> {
    const int32_t right = next[static_cast<size_t>(left)];
    if (right < 0) return std::nullopt;
    const auto rank = table.rank(ids[static_cast<size_t>(left)], ids[static_cast<size_t>(right)]);
    if (!rank) return std::nullopt;
    return (uint64_t{static_cast<uint32_t>(*rank)} << 32) | static_cast<uint32_t>(left);
  };
  for (size_t i = 0; i + 1 < n; ++i) {
    if (auto c = candidate(static_cast<int32_t>(i))) initial.push_back(*c);
  }
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<>> heap(std::greater<>{},
                                                                            std::move(initial));
  while (!heap.empty()) {
    const uint64_t top = heap.top();
    heap.pop();
    const auto left = static_cast<int32_t>(top & 0xFFFFFFFFu);
    const auto rank = static_cast<int32_t>(top >> 32);
    const size_t l = static_cast<size_t>(left);
    if (ids[l] < 0) continue;  // merged into its left neighbour meanwhile
    const int32_t right = next[l];
    if (right < 0) continue;
    // Ranks are unique per pair, so an equal rank means the pair is still the one queued.
    if (table.rank(ids[l], ids[static_cast<size_t>(right)]) != rank) continue;
    ids[l] = table.result(rank);
    ids[static_cast<size_t>(right)] = -1;
    next[l] = next[static_cast<size_t>(right)];
    if (next[l] >= 0) prev[static_cast<size_t>(next[l])] = left;
    if (prev[l] >= 0) {
      if (auto c = candidate(prev[l])) heap.push(*c);
    }
    if (auto c = candidate(left)) heap.push(*c);
  }
  size_t out = 0;
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)])
    ids[out++] = ids[static_cast<size_t>(i)];
  ids.resize(out);
}

AddedTokenMatcher::AddedTokenMatcher(const Vocabulary& tokens, const std::vector<uint8_t>& added,
                                     const std::vector<uint8_t>& special) {
  nodes_.emplace_back();  // root
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string_view text = tokens.text(id);
    if (id >= added.size() || !added[id] || text.empty()) continue;
    int32_t node = 0;
    for (const char c : text) {
      const auto byte = static_cast<unsigned char>(c);
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | byte;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, static_cast<int32_t>(nodes_.size())).first;
        nodes_.emplace_back();
      }
      node = it->second;
    }
    first_byte_[static_cast<unsigned char>(text[0])] = true;
    Node& end = nodes_[static_cast<size_t>(node)];
    if (end.id < 0) end.id = static_cast<int32_t>(id);  // a duplicate text keeps its first id
    const bool is_special = id < special.size() && special[id];
    if (!is_special && end.plain_id < 0) end.plain_id = static_cast<int32_t>(id);
  }
}

AddedTokenMatcher::Match AddedTokenMatcher::find(std::string_view text, size_t from,
                                                 bool parse_special) const {
  for (size_t begin = from; begin < text.size(); ++begin) {
    if (!first_byte_[static_cast<unsigned char>(text[begin])]) continue;
    Match best{begin, 0, -1};
    int32_t node = 0;
    for (size_t i = begin; i < text.size(); ++i) {
      node = child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      const Node& n = nodes_[static_cast<size_t>(node)];
      const int32_t id = parse_special ? n.id : n.plain_id;
      if (id >= 0) best = Match{begin, i + 1 - begin, id};
    }
    if (best.id >= 0) return best;
  }
  return Match{text.size(), 0, -1};
}

}  // namespace gemmax
