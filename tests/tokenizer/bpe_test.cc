// The fast merge loop against a plain quadratic reference, and the added-token matcher's rules.
#include "tokenizer/bpe.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <stdexcept>

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

TEST(BpeMergeTable, FindsEveryPairAndNothingElse) {
  // Ids spread over 19 bits (Gemma 3's vocabulary needs 19), pairs in both orders.
  std::mt19937 rng(99);
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<int32_t> results;
  std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> reference;
  while (merges.size() < 20000) {
    const auto l = static_cast<int32_t>(rng() % 262145);
    const auto r = static_cast<int32_t>(rng() % 262145);
    if (reference.count({l, r})) continue;
    reference[{l, r}] = {static_cast<int32_t>(merges.size()), l ^ r};
    merges.emplace_back(l, r);
    results.push_back(l ^ r);
  }
  const BpeMergeTable table(merges, results);
  EXPECT_EQ(table.size(), merges.size());
  for (const auto& [pair, merge] : reference) {
    const auto rank = table.rank(pair.first, pair.second);
    ASSERT_TRUE(rank.has_value()) << pair.first << " " << pair.second;
    EXPECT_EQ(*rank, merge.first);
    EXPECT_EQ(table.result(*rank), merge.second);
    if (!reference.count({pair.second, pair.first})) {
      EXPECT_FALSE(table.rank(pair.second, pair.first).has_value());
    }
  }
  EXPECT_FALSE(table.rank(merges[0].first, 262145 + 7).has_value());  // above every merged id
  EXPECT_FALSE(table.rank(1 << 20, merges[0].second).has_value());
  EXPECT_FALSE(table.rank(-1, merges[0].second).has_value());
  EXPECT_FALSE(table.rank(merges[0].first, -1).has_value());
}

TEST(BpeMergeTable, RepeatedPairKeepsItsLastRankAndEdgeIdsFit) {
  const int32_t big = 0x7FFFFFFF;  // 31-bit ids leave 2 bits of rank: room for 2 merges
  const BpeMergeTable table({{0, big}, {0, big}}, {5, 6});
  const auto rank = table.rank(0, big);
  ASSERT_TRUE(rank.has_value());
  EXPECT_EQ(*rank, 1);
  EXPECT_EQ(table.result(*rank), 6);
  EXPECT_FALSE(table.rank(big, 0).has_value());
  EXPECT_FALSE(table.rank(0, 0).has_value());
  EXPECT_THROW(BpeMergeTable({{0, big}, {1, big}, {2, big}}, {1, 2, 3}), std::length_error);
  EXPECT_THROW(BpeMergeTable({{0, -2}}, {1}), std::invalid_argument);
  EXPECT_THROW(BpeMergeTable({{0, 1}}, {}), std::invalid_argument);
  const BpeMergeTable empty({}, {});
  EXPECT_FALSE(empty.rank(0, 0).has_value());
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
  const AddedTokenMatcher m(Vocabulary(tokens), {0, 1, 1, 1, 1}, {0, 0, 0, 0, 1});
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
