#include "pipeline/stop_matcher.h"

#include <gtest/gtest.h>

namespace gemmax {
namespace {

// Feeds `pieces` and returns everything released (push + flush when no stop matched).
std::string feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += m.push(p);
  out += m.flush();
  return out;
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, StopInsideOnePieceCutsBeforeIt) {
  StopMatcher m({"END"});
  EXPECT_EQ(feed(m, {"hello END world"}), "hello ");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "END");
}

TEST(StopMatcher, StopAcrossPiecesIsNeverReleased) {
  StopMatcher m({"\n\nUser:"});
  std::string released;
  for (const char* p : {"Hi", " there", "\n", "\nUs", "er", ":", " more"}) {
    released += m.push(p);
    // At no point may any prefix of the stop string that ends up matching be visible.
    EXPECT_EQ(released.find('\n'), std::string::npos) << released;
  }
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(released, "Hi there");
  EXPECT_EQ(m.push("later"), "");
}

TEST(StopMatcher, FalseStartIsReleasedOnceItCannotMatch) {
  StopMatcher m({"abc"});
  EXPECT_EQ(m.push("xa"), "x");   // "a" may begin "abc"
  EXPECT_EQ(m.push("b"), "");     // "ab" still may
  EXPECT_EQ(m.push("d"), "abd");  // it did not
  EXPECT_EQ(m.flush(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, HeldTailIsFlushedAtTheEnd) {
  StopMatcher m({"stop"});
  EXPECT_EQ(m.push("we st"), "we ");
  EXPECT_EQ(m.flush(), "st");
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"zz", "b"});
  EXPECT_EQ(feed(m, {"a", "bzz"}), "a");
  EXPECT_EQ(m.matched(), "b");
}

TEST(StopMatcher, OverlappingPrefixes) {
  StopMatcher m({"aab"});
  EXPECT_EQ(feed(m, {"a", "a", "a", "b", "c"}), "a");
  EXPECT_TRUE(m.stopped());
}

}  // namespace
}  // namespace gemmax
