// TokenIndex: every token found at its id, the first id of a repeated text, -1 for anything else,
// and lookups still valid after the vector of tokens is moved.
#include "tokenizer/token_index.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace gemmax {
namespace {

TEST(TokenIndex, FindsEveryTokenAndNothingElse) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 5000; ++i) {
    std::string t(1, 't');  // appended: "t" + s trips GCC 12's -Wrestrict false positive
    tokens.push_back(t.append(std::to_string(i * 7919 % 100003)));
  }
  tokens.push_back("");                      // the empty text is a token too
  tokens.push_back(std::string("a\0b", 3));  // bytes, not C strings
  tokens.push_back("a long token that does not fit the small-string buffer");
  const TokenIndex index(tokens);
  EXPECT_EQ(index.size(), tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i)
    EXPECT_EQ(index.find(tokens[i]), static_cast<int32_t>(i));
  EXPECT_EQ(index.find("t"), -1);
  EXPECT_EQ(index.find("a"), -1);
  EXPECT_EQ(index.find(std::string("a\0c", 3)), -1);
  EXPECT_EQ(index.find("x1"), -1);
  EXPECT_EQ(index.find("a long token that does not fit the small-string buffeR"), -1);
}

TEST(TokenIndex, RepeatedTextKeepsItsFirstId) {
  const std::vector<std::string> tokens = {"x", "y", "x", "z", "y"};
  const TokenIndex index(tokens);
  EXPECT_EQ(index.size(), 3u);
  EXPECT_EQ(index.find("x"), 0);
  EXPECT_EQ(index.find("y"), 1);
  EXPECT_EQ(index.find("z"), 3);
}

TEST(TokenIndex, EmptyIndexFindsNothing) {
  EXPECT_EQ(TokenIndex().find("a"), -1);
  const std::vector<std::string> none;
  EXPECT_EQ(TokenIndex(none).find(""), -1);
}

TEST(TokenIndex, SurvivesAMoveOfTheTokenVector) {
  std::vector<std::string> tokens = {"short", "a token long enough to live on the heap"};
  const TokenIndex index(tokens);
  const std::vector<std::string> moved = std::move(tokens);
  EXPECT_EQ(index.find("short"), 0);
  EXPECT_EQ(index.find("a token long enough to live on the heap"), 1);
}

}  // namespace
}  // namespace gemmax
