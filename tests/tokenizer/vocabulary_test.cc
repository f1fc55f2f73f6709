// Vocabulary: every token's text at its id and found at its id, the first id of a repeated text,
// -1 for anything else, and lookups still valid after the vocabulary is moved.
#include "tokenizer/vocabulary.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace gemmax {
namespace {

TEST(Vocabulary, HoldsAndFindsEveryTokenAndNothingElse) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 5000; ++i) {
    std::string t(1, 't');  // appended: "t" + s trips GCC 12's -Wrestrict false positive
    tokens.push_back(t.append(std::to_string(i * 7919 % 100003)));
  }
  tokens.push_back("");                      // the empty text is a token too
  tokens.push_back(std::string("a\0b", 3));  // bytes, not C strings
  tokens.push_back("a long token that does not fit the small-string buffer");
  tokens.push_back("");  // a second empty text: an empty range after a non-empty one
  const Vocabulary vocab(tokens);
  ASSERT_EQ(vocab.size(), tokens.size());
  EXPECT_EQ(vocab.distinct(), tokens.size() - 1);
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(vocab.text(i), tokens[i]) << i;
  for (size_t i = 0; i + 1 < tokens.size(); ++i)
    EXPECT_EQ(vocab.find(tokens[i]), static_cast<int32_t>(i));
  EXPECT_EQ(vocab.find(""), 5000);
  EXPECT_EQ(vocab.find("t"), -1);
  EXPECT_EQ(vocab.find("a"), -1);
  EXPECT_EQ(vocab.find(std::string("a\0c", 3)), -1);
  EXPECT_EQ(vocab.find("x1"), -1);
  EXPECT_EQ(vocab.find("a long token that does not fit the small-string buffeR"), -1);
}

TEST(Vocabulary, RepeatedTextKeepsItsFirstId) {
  const Vocabulary vocab(std::vector<std::string>{"x", "y", "x", "z", "y"});
  EXPECT_EQ(vocab.size(), 5u);
  EXPECT_EQ(vocab.distinct(), 3u);
  EXPECT_EQ(vocab.find("x"), 0);
  EXPECT_EQ(vocab.find("y"), 1);
  EXPECT_EQ(vocab.find("z"), 3);
  EXPECT_EQ(vocab.text(2), "x");
}

TEST(Vocabulary, EmptyVocabularyFindsNothing) {
  EXPECT_EQ(Vocabulary().find("a"), -1);
  const Vocabulary none(std::vector<std::string>{});
  EXPECT_EQ(none.size(), 0u);
  EXPECT_EQ(none.find(""), -1);
}

TEST(Vocabulary, SurvivesAMove) {
  // Short texts only: a std::string holding them would keep them inline and move them.
  Vocabulary vocab(std::vector<std::string>{"ab", "c"});
  const Vocabulary moved = std::move(vocab);
  EXPECT_EQ(moved.find("ab"), 0);
  EXPECT_EQ(moved.find("c"), 1);
  EXPECT_EQ(moved.text(1), "c");
}

}  // namespace
}  // namespace gemmax
