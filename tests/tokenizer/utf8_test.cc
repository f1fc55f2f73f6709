#include "tokenizer/utf8.h"

#include <gtest/gtest.h>

namespace gemmax::utf8 {
namespace {

size_t len_of(std::string_view s) {
  uint32_t cp = 0;
  return decode(s, 0, cp);
}

TEST(Utf8, DecodesWellFormedSequences) {
  uint32_t cp = 0;
  EXPECT_EQ(decode("A", 0, cp), 1u);
  EXPECT_EQ(cp, 0x41u);
  EXPECT_EQ(decode("\xC3\xA9", 0, cp), 2u);
  EXPECT_EQ(cp, 0xE9u);
  EXPECT_EQ(decode("\xE2\x96\x81", 0, cp), 3u);
  EXPECT_EQ(cp, 0x2581u);
  EXPECT_EQ(decode("\xF0\x9F\x98\x80", 0, cp), 4u);
  EXPECT_EQ(cp, 0x1F600u);
  EXPECT_EQ(decode("\xF4\x8F\xBF\xBF", 0, cp), 4u);
  EXPECT_EQ(cp, 0x10FFFFu);
}

TEST(Utf8, RejectsMalformedSequences) {
  EXPECT_EQ(len_of("\x80"), 0u);              // stray continuation
  EXPECT_EQ(len_of("\xC0\x80"), 0u);          // overlong NUL
  EXPECT_EQ(len_of("\xE0\x80\x80"), 0u);      // overlong
  EXPECT_EQ(len_of("\xED\xA0\x80"), 0u);      // surrogate U+D800
  EXPECT_EQ(len_of("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(len_of("\xE4\xB8"), 0u);          // cut short
  EXPECT_EQ(len_of("\xFF"), 0u);
  EXPECT_FALSE(is_valid("ok\xE4\xB8"));
  EXPECT_TRUE(is_valid("ok\xE4\xB8\xAD"));
}

TEST(Utf8, AppendRoundTrips) {
  for (uint32_t cp : {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    append(s, cp);
    uint32_t back = 0;
    ASSERT_EQ(decode(s, 0, back), s.size()) << cp;
    EXPECT_EQ(back, cp);
  }
}

TEST(Utf8, PythonStripMatchesStrStrip) {
  EXPECT_EQ(python_strip("  a b \t\n"), "a b");
  EXPECT_EQ(python_strip("\x1c\x1f"
                         "a"
                         "\xC2\x85"),
            "a");  // \x1c-\x1f, NEL
  EXPECT_EQ(python_strip("\xC2\xA0"
                         "a"
                         "\xE3\x80\x80"),
            "a");  // NBSP, ideographic space
  EXPECT_EQ(python_strip("\xE2\x80\xA8"
                         "a"
                         "\xE2\x80\xA9"),
            "a");  // line/paragraph separators
  EXPECT_EQ(python_strip("\xE2\x80\x8B"
                         "a"),
            "\xE2\x80\x8B"
            "a");  // U+200B is not whitespace
  EXPECT_EQ(python_strip("\xEF\xBB\xBF"
                         "a "),
            "\xEF\xBB\xBF"
            "a");  // nor is U+FEFF
  EXPECT_EQ(python_strip(" \t "), "");
  EXPECT_EQ(python_strip(""), "");
}

}  // namespace
}  // namespace gemmax::utf8
