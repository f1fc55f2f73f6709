// The fast merge loop against a plain quadratic reference, and the added-token matcher's rules.
#include "tokenizer/bpe.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace gemmax {
namespace {

// Reference: scan every adjacent pair, merge the lowest rank (leftmost on ties), repeat.
std::vector<int32_t> naive_bpe(
    const std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>>& m,
    std::vector<int32_t> ids) {
  for (;;) {
    int best = -1;
    int32_t best_rank = 0;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const auto it = m.find({ids[i], ids[i + 1]});
      if (it != m.end() && (best < 0 || it->second.first < best_rank)) {
        best = static_cast<int>(i);
        best_rank = it->second.first;
      }
    }
    if (best < 0) return ids;
    ids[static_cast<size_t>(best)] =
        m.at({ids[static_cast<size_t>(best)], ids[static_cast<size_t>(best) + 1]}).second;
    ids.erase(ids.begin() + best + 1);
  }
}

TEST(BpeMerge, MatchesQuadraticReferenceOnRandomTables) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 200; ++round) {
    // Symbols 0..4 are "characters"; each merge makes a fresh id, so results can merge again.
    std::vector<std::pair<int32_t, int32_t>> merges;
    std::vector<int32_t> results;
    std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> reference;
    int32_t next_id = 5;
    const int count = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < count; ++i) {
      const auto a = static_cast<int32_t>(rng() % static_cast<uint32_t>(next_id));
      const auto b = static_cast<int32_t>(rng() % static_cast<uint32_t>(next_id));
      if (reference.count({a, b})) continue;
      reference[{a, b}] = {static_cast<int32_t>(merges.size()), next_id};
      merges.emplace_back(a, b);
      results.push_back(next_id++);
    }
    const BpeMergeTable table(merges, results);
    std::vector<int32_t> word(rng() % 60);
    for (auto& s : word) s = static_cast<int32_t>(rng() % 5);
    std::vector<int32_t> fast = word;
    bpe_merge(table, fast);
    EXPECT_EQ(fast, naive_bpe(reference, word)) << "round " << round;
  }
}

TEST(BpeMerge, TiesGoToTheLeftmostPair) {
  // "a a a" with a+a -> A: the left pair merges first, giving "A a", not "a A".
  const BpeMergeTable table({{0, 0}}, {1});
  std::vector<int32_t> ids = {0, 0, 0};
  bpe_merge(table, ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 0}));
}

TEST(BpeMerge, LongRunIsNotQuadratic) {
  // 1M identical symbols with a doubling chain of merges: finishes quickly with the expected
  // result.
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<int32_t> results;
  for (int32_t i = 0; i < 20; ++i) merges.emplace_back(i, i), results.push_back(i + 1);
  const BpeMergeTable table(merges, results);
  std::vector<int32_t> ids(1 << 20, 0);
  bpe_merge(table, ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{20}));
}

TEST(AddedTokenMatcher, LeftmostThenLongest) {
  const std::vector<std::string> tokens = {"x", "ab", "abc", "bcd", "<s>"};
  const AddedTokenMatcher m(tokens, {0, 1, 1, 1, 1}, {0, 0, 0, 0, 1});
  auto hit = m.find("zabcd", 0, true);
  EXPECT_EQ(hit.begin, 1u);
  EXPECT_EQ(hit.length, 3u);
  EXPECT_EQ(hit.id, 2);  // "abc" starts first; "bcd" is never considered
  hit = m.find("zabx", 0, true);
  EXPECT_EQ(hit.id, 1);
  EXPECT_EQ(m.find("x", 0, true).id, -1);  // "x" is not an added token
  EXPECT_EQ(m.find("a<s>", 0, true).id, 4);
  EXPECT_EQ(m.find("a<s>", 0, false).id, -1);  // special tokens off: plain text
  hit = m.find("abab", 1, true);
  EXPECT_EQ(hit.begin, 2u);
}

}  // namespace
}  // namespace gemmax
