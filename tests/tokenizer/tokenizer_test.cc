// Encode/decode rules on a small hand-made vocabulary, where each expected id is easy to check by
// eye.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <tuple>

#include "tokenizer/utf8.h"

namespace gemmax {
namespace {

using Ids = std::vector<int32_t>;
constexpr int32_t kByte0 = 7;  // <0x00>

TokenizerSpec tiny_spec() {
  TokenizerSpec s;
  s.source = "tiny";
  s.tokens = {
      "<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "\n", "\xE2\x96\x81\xE2\x96\x81"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    s.tokens.push_back(name);
  }
  // 263..
  for (const char* t : {"\xE2\x96\x81", "a", "b", "h", "i", "\xE2\x96\x81h", "hi", "\xE2\x96\x81hi",
                        "ab", "\xE4\xB8\xAD"})
    s.tokens.push_back(t);
  s.added.assign(s.tokens.size(), 0);
  s.special.assign(s.tokens.size(), 0);
  for (int id : {0, 1, 2, 3, 4, 5, 6}) s.added[static_cast<size_t>(id)] = 1;
  for (int id : {0, 1, 2, 3, 4}) s.special[static_cast<size_t>(id)] = 1;
  s.merges = {{263, 266}, {266, 267}, {268, 267}, {264, 265}, {263, 263}};
  s.bos_id = 2, s.eos_id = 1, s.unk_id = 3, s.pad_id = 0;
  s.stop_ids = {1, 4};
  s.add_bos = true;
  return s;
}

constexpr int32_t kSpace = 263, kA = 264, kB = 265, kH = 266, kI = 267, kSpaceHi = 270, kHi = 269,
                  kAb = 271, kZhong = 272, kTwoSpaces = 6;

class TinyTokenizer : public ::testing::Test {
 protected:
  Tokenizer tok{tiny_spec()};
  Ids enc(std::string_view s, bool bos = false, bool special = true) const {
    return tok.encode(s, EncodeOptions{bos, special});
  }
};

TEST_F(TinyTokenizer, MergesByRank) {
  EXPECT_EQ(enc("hi"), (Ids{kHi}));
  // "▁ h i": (▁,h) has rank 0, then (▁h,i); never hi via (h,i).
  EXPECT_EQ(enc(" hi"), (Ids{kSpaceHi}));
  EXPECT_EQ(enc("abhi"), (Ids{kAb, kHi}));
  EXPECT_EQ(enc("ba"), (Ids{kB, kA}));
}

TEST_F(TinyTokenizer, SpacesBecomeMarkersAndMergeLikeAnyPiece) {
  EXPECT_EQ(enc("a b"), (Ids{kA, kSpace, kB}));
  EXPECT_EQ(enc("  a"), (Ids{kTwoSpaces, kA}));  // "▁▁" reached by the merge, not by matching
  EXPECT_EQ(enc("   "), (Ids{kTwoSpaces, kSpace}));
}

TEST_F(TinyTokenizer, ByteFallbackForMissingCodePoints) {
  EXPECT_EQ(enc("\xC3\xA9"), (Ids{kByte0 + 0xC3, kByte0 + 0xA9}));  // é not in the vocab
  EXPECT_EQ(enc("\xE4\xB8\xAD"), (Ids{kZhong}));
  EXPECT_EQ(enc("\xFF"
                "a\x80"),
            (Ids{kByte0 + 0xFF, kA, kByte0 + 0x80}));  // not UTF-8
}

TEST_F(TinyTokenizer, AddedTokensAreCutOutOfRawText) {
  EXPECT_EQ(enc("a\nb"), (Ids{kA, 5, kB}));
  EXPECT_EQ(enc("h<start_of_turn>i"), (Ids{kH, 4, kI}));
  // A literal "▁▁" in the text is the added token.
  EXPECT_EQ(enc("\xE2\x96\x81\xE2\x96\x81"
                "a"),
            (Ids{kTwoSpaces, kA}));
  // Special tokens as plain text: '<' and friends fall back to bytes; "\n" is still matched.
  const Ids plain = enc("<bos>\n", false, false);
  ASSERT_EQ(plain.size(), 6u);
  EXPECT_EQ(plain.front(), kByte0 + '<');
  EXPECT_EQ(plain.back(), 5);
}

TEST_F(TinyTokenizer, BosIsOptional) {
  EXPECT_EQ(enc("", true), (Ids{2}));
  EXPECT_EQ(enc(""), (Ids{}));
  EXPECT_EQ(enc("hi", true), (Ids{2, kHi}));
  EXPECT_EQ(tok.encode("hi"), (Ids{2, kHi}));  // add_bos unset: the spec's default
}

TEST_F(TinyTokenizer, DecodeRules) {
  EXPECT_EQ(tok.decode(Ids{kHi, kSpaceHi, kTwoSpaces}), "hi hi  ");
  EXPECT_EQ(tok.decode(Ids{kByte0 + 0xE4, kByte0 + 0xB8, kByte0 + 0xAD}), "\xE4\xB8\xAD");
  // A malformed run becomes one U+FFFD per byte, valid prefix included.
  EXPECT_EQ(tok.decode(Ids{kByte0 + 'A', kByte0 + 0xFF}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // Skipped specials do not break a run; kept ones do.
  const Ids run = {kByte0 + 0xE4, 2, kByte0 + 0xB8, kByte0 + 0xAD};
  EXPECT_EQ(tok.decode(run, true), "\xE4\xB8\xAD");
  EXPECT_EQ(tok.decode(run, false), "\xEF\xBF\xBD<bos>\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode(Ids{2, kA, 5, 4}, true), "a\n");  // "\n" is added but not special
  EXPECT_EQ(tok.decode(Ids{}), "");
  EXPECT_THROW(tok.decode(Ids{-1}), TokenizerError);
  EXPECT_THROW(tok.decode(Ids{static_cast<int32_t>(tok.vocab_size())}), TokenizerError);
}

TEST_F(TinyTokenizer, RoundTripsTextWithoutMarkers) {
  std::mt19937 rng(7);
  const std::vector<std::string> parts = {"a",
                                          "b",
                                          "h",
                                          "i",
                                          " ",
                                          "\n",
                                          "\xE4\xB8\xAD",
                                          "\xC3\xA9",
                                          "<start_of_turn>",
                                          "\xF0\x9F\x98\x80"};
  for (int round = 0; round < 300; ++round) {
    std::string text;
    for (int n = static_cast<int>(rng() % 12); n > 0; --n) text += parts[rng() % parts.size()];
    EXPECT_EQ(tok.decode(enc(text)), text);
  }
}

TEST_F(TinyTokenizer, StreamingEqualsOneShotAndEmitsWholeCharacters) {
  std::mt19937 rng(99);
  for (int round = 0; round < 500; ++round) {
    Ids ids(rng() % 16);
    for (auto& id : ids) {
      // Mostly byte tokens from a few lead/continuation bytes, to exercise partial sequences.
      const uint32_t pick = rng() % 8;
      id = pick < 5
               ? kByte0 + static_cast<int32_t>(std::vector<int>{0xE4, 0xB8, 0xAD, 0x41, 0xF0}[pick])
               : static_cast<int32_t>(rng() % tok.vocab_size());
    }
    for (const bool skip : {false, true}) {
      StreamingDetokenizer stream(tok, skip);
      std::string joined;
      for (const int32_t id : ids) {
        const std::string piece = stream.push(id);
        EXPECT_TRUE(utf8::is_valid(piece));
        joined += piece;
      }
      joined += stream.finish();
      EXPECT_EQ(joined, tok.decode(ids, skip));
    }
  }
}

TEST_F(TinyTokenizer, StopIdsAndLookups) {
  EXPECT_TRUE(tok.is_stop(1));
  EXPECT_TRUE(tok.is_stop(4));
  EXPECT_FALSE(tok.is_stop(2));
  EXPECT_EQ(tok.token_id("hi"), kHi);
  EXPECT_FALSE(tok.token_id("zz").has_value());
  EXPECT_EQ(tok.byte_value(kByte0 + 0x41), 0x41);
  EXPECT_EQ(tok.byte_value(kA), -1);
}

TEST(TokenizerSpecErrors, GivenMergeResultsAreCheckedAgainstTheTexts) {
  // One right result (▁h), then wrong (a for hi), out of range, negative and wrong (▁ for ▁▁)
  // ones, which are looked up from the texts: the encodings are the tiny tokenizer's.
  TokenizerSpec s = tiny_spec();
  s.merge_results = {kSpaceHi - 2, kA, 100000, -5, kSpace};
  const Tokenizer t(s);
  const Tokenizer plain(tiny_spec());
  for (const char* text : {"hi", " hi", "abhi", "  hi ab", "ba"})
    EXPECT_EQ(t.encode(text), plain.encode(text)) << text;
  EXPECT_EQ(t.encode(" hi", EncodeOptions{false, true}), (Ids{kSpaceHi}));
  // A given result whose text does not match and no token that does: still an error.
  s.merges.push_back({264, 264});
  s.merge_results.push_back(kAb);
  EXPECT_THROW(Tokenizer{s}, TokenizerError);
}

TEST(TokenizerSpecErrors, PackedVocabularyStandsForTheTokens) {
  TokenizerSpec packed = tiny_spec();
  packed.vocabulary.emplace(packed.tokens);
  packed.tokens.clear();
  const Tokenizer t(packed);
  const Tokenizer plain(tiny_spec());
  EXPECT_EQ(t.vocab_size(), plain.vocab_size());
  for (const char* text : {"hi", " hi", "abhi", "<start_of_turn>ab\n"})
    EXPECT_EQ(t.encode(text), plain.encode(text)) << text;
  EXPECT_EQ(t.token_text(kHi), "hi");
  TokenizerSpec both = tiny_spec();
  both.vocabulary.emplace(both.tokens);
  EXPECT_THROW(Tokenizer{both}, TokenizerError);
  TokenizerSpec empty = tiny_spec();
  empty.tokens.clear();
  empty.vocabulary.emplace(std::vector<std::string>{});
  EXPECT_THROW(Tokenizer{empty}, TokenizerError);
}

TEST(TokenizerSpecErrors, ScoresStandForMergesAndTheirErrorsNameTheSource) {
  // "a b ab": with scores instead of merges the tokenizer derives a+b -> ab itself.
  TokenizerSpec s;
  s.source = "scored";
  s.tokens = {"a", "b", "ab"};
  s.scores = {0.0f, 0.0f, -1.0f};
  const Tokenizer t(s);
  EXPECT_EQ(t.merge_count(), 1u);
  EXPECT_EQ(t.encode("ab", EncodeOptions{false, true}), (Ids{2}));
  s.scores[2] = std::nanf("");
  try {
    Tokenizer bad(s);
    FAIL() << "expected an error";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("scored: the score of token 2 is NaN"), std::string::npos)
        << e.what();
  }
}

TEST(TokenizerSpecErrors, MergeWithUnknownResultIsRejected) {
  TokenizerSpec s = tiny_spec();
  s.merges.push_back({264, 264});  // "aa" is not a token
  try {
    Tokenizer t(s);
    FAIL() << "expected an error";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("tiny: merge 5"), std::string::npos) << e.what();
  }
}

TEST(DeriveMerges, RanksByScoreThenLongerLeftThenLongerRight) {
  // a b c ab bc abc, plus a user-defined "aa"-like piece and a control piece that must not merge.
  const std::vector<std::string> tokens = {"a",   "b",     "c", "ab",   "bc",
                                           "abc", "<ctl>", "<", "ctl>", "cc"};
  const std::vector<float> scores = {0, 0, 0, -1, -2, -0.5f, 0, 0, 0, -1000};
  const std::vector<int32_t> types = {1, 1, 1, 1, 1, 1, 3, 1, 1, 4};
  const RankedMerges merges = derive_merges_from_scores(Vocabulary(tokens), scores, types);
  const std::vector<std::pair<int32_t, int32_t>> expected = {
      {2, 2},  // "cc" is user-defined: score 0 ranks it first
      {3, 2},  // abc = ab + c (longer left part first)
      {0, 4},  // abc = a + bc
      {0, 1},  // ab (-1)
      {1, 2},  // bc (-2)
  };
  EXPECT_EQ(merges.pairs, expected);
  EXPECT_EQ(merges.results, (std::vector<int32_t>{9, 5, 5, 3, 4}));
}

TEST(DeriveMerges, LargeVocabularyMatchesAPlainReference) {
  // 5000 strings over {a, b, c} (past the size where the search runs in parts on several
  // threads), coarse scores so that ties are common, some user-defined and control pieces.
  std::vector<std::string> tokens;
  for (size_t len = 1; tokens.size() < 5000; ++len) {
    size_t count = 1;
    for (size_t i = 0; i < len; ++i) count *= 3;
    for (size_t n = 0; n < count && tokens.size() < 5000; ++n) {
      std::string t;
      for (size_t i = 0, v = n; i < len; ++i, v /= 3) t += static_cast<char>('a' + v % 3);
      tokens.push_back(t);
    }
  }
  std::mt19937 rng(7);
  std::vector<float> scores(tokens.size());
  std::vector<int32_t> types(tokens.size(), 1);
  for (size_t i = 0; i < tokens.size(); ++i) {
    scores[i] = -static_cast<float>(rng() % 50);
    if (rng() % 20 == 0) types[i] = 4;
    if (rng() % 50 == 0) types[i] = 3;
  }
  const RankedMerges merges = derive_merges_from_scores(Vocabulary(tokens), scores, types, -7.0f);

  std::map<std::string, int32_t> id_of;
  for (size_t i = 0; i < tokens.size(); ++i) id_of.emplace(tokens[i], static_cast<int32_t>(i));
  struct Ref {
    float score;
    size_t left_len, right_len;
    int32_t result, left, right;
  };
  std::vector<Ref> ref;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] != 1 && types[i] != 4) continue;
    for (size_t split = 1; split < tokens[i].size(); ++split) {
      const auto l = id_of.find(tokens[i].substr(0, split));
      const auto r = id_of.find(tokens[i].substr(split));
      if (l == id_of.end() || r == id_of.end()) continue;
      ref.push_back({types[i] == 4 ? -7.0f : scores[i], split, tokens[i].size() - split,
                     static_cast<int32_t>(i), l->second, r->second});
    }
  }
  std::sort(ref.begin(), ref.end(), [](const Ref& a, const Ref& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left_len != b.left_len) return a.left_len > b.left_len;
    if (a.right_len != b.right_len) return a.right_len > b.right_len;
    return std::tie(a.result, a.left, a.right) < std::tie(b.result, b.left, b.right);
  });
  ASSERT_EQ(merges.pairs.size(), ref.size());
  ASSERT_EQ(merges.results.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_EQ(merges.pairs[i], std::make_pair(ref[i].left, ref[i].right)) << i;
    ASSERT_EQ(merges.results[i], ref[i].result) << i;
  }
}

TEST(DeriveMerges, NaNScoreIsRejected) {
  const std::vector<std::string> tokens = {"a", "b", "ab"};
  const std::vector<float> scores = {0, 0, std::nanf("")};
  EXPECT_THROW(derive_merges_from_scores(Vocabulary(tokens), scores, {}), TokenizerError);
}

}  // namespace
}  // namespace gemmax
