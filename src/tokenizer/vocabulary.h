// The token texts of a vocabulary and the index from text back to id, in one object that owns
// both. Texts are packed end to end in one buffer (4 bytes of offset per token instead of a
// 32-byte std::string, plus a heap block for each text over 15 bytes); the index is one flat
// open-addressing table of ids and 32-bit hash tags, probed linearly. For Gemma 3's 262145 tokens
// (2.3 MB of text) that is 3.3 MB of texts and 4 MB of index, where a std::vector<std::string>
// took ~9 MB and a std::unordered_map<std::string_view, int32_t> ~14 MB in separately allocated
// nodes; a lookup is one or two cache misses (building a tokenizer from GGUF scores does ~2M).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gemmax {

class Vocabulary {
 public:
  Vocabulary() = default;
  // Copies tokens[0..n); a text that appears twice keeps its first id.
  explicit Vocabulary(const std::vector<std::string>& tokens);

  size_t size() const { return ends_.size(); }
  // The text of id (unchecked: 0 <= id < size()).
  std::string_view text(size_t id) const {
    const size_t begin = id == 0 ? 0 : ends_[id - 1];
    return {text_.data() + begin, ends_[id] - begin};
  }
  // The id of `text`, or -1.
  int32_t find(std::string_view text) const;
  // Distinct texts (the index's entries).
  size_t distinct() const { return distinct_; }
  size_t memory_bytes() const {
    return text_.capacity() + ends_.capacity() * sizeof(uint32_t) +
           slots_.capacity() * sizeof(Slot);
  }

 private:
  struct Slot {
    uint32_t hash = 0;
    int32_t id = -1;  // -1: empty
  };
  std::vector<char> text_;      // every text, end to end
  std::vector<uint32_t> ends_;  // id -> end of its text in text_
  std::vector<Slot> slots_;     // power-of-two size, at most 2/3 full
  size_t distinct_ = 0;
};

}  // namespace gemmax
