// StopMatcher: finds stop strings in streamed text. Text arrives in pieces (one per token, cut
// anywhere); push() returns only text that can no longer become part of a stop string, so a stop
// string is never released, even partially, before it is known not to match.
#pragma once

#include <string>
#include <vector>

namespace gemmax {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends `piece`; returns the text now safe to emit. After a match, stopped() is true, the
  // returned text ends right before the stop string, and later pushes return nothing.
  std::string push(const std::string& piece);
  // The held-back tail, for when generation ends for another reason.
  std::string flush();
  bool stopped() const { return stopped_; }
  // Which stop string matched (empty before a match).
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  size_t longest_ = 0;
  std::string pending_;  // text not yet released
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace gemmax
