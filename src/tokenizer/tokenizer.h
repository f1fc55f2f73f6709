// Gemma 3 tokenizer: text -> ids exactly as HuggingFace `tokenizers` does with Google's
// tokenizer.json, and ids -> text (one-shot and streaming). Built from plain vectors
// (TokenizerSpec) so that loaders for tokenizer.json and for GGUF metadata stay thin.
//
// Encoding, in the reference's order:
//   1. added tokens (special or not) are cut out of the raw text, leftmost-longest;
//   2. each stretch between them has " " replaced by U+2581 and is ONE BPE word (the reference
//      pre-tokenizer never splits once spaces are gone);
//   3. the word starts as one symbol per code point (code points without a vocab entry become their
//      UTF-8 bytes as <0xNN> tokens) and adjacent pairs are merged, lowest merge rank first,
//      leftmost on ties, in O(n log n) with a heap over a linked list of symbols.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/vocabulary.h"

namespace gemmax {

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Everything a tokenizer is made of, as plain data. Token texts spell spaces as U+2581 ("▁").
struct TokenizerSpec {
  std::string source;               // where it came from, for error messages
  std::vector<std::string> tokens;  // id -> text
  // The same texts already packed by the loader (it then leaves `tokens` empty): the GGUF loader
  // derives its merges over a Vocabulary and hands that one on instead of ~9 MB of std::strings.
  std::optional<Vocabulary> vocabulary;
  std::vector<uint8_t> added;  // id -> 1 if matched verbatim in raw text before BPE
  std::vector<uint8_t>
      special;  // id -> 1 if skipped by decode(skip_special) and by parse_special=false
  size_t model_vocab_size =
      0;  // ids below this are BPE-model vocab (single code points looked up here)
  std::vector<std::pair<int32_t, int32_t>> merges;  // (left id, right id), rank = index
  // rank -> merged id, where the loader knows it; empty: the tokenizer looks up each merge's
  // joined text (checked against the texts either way).
  std::vector<int32_t> merge_results;
  // SentencePiece-style vocabularies (GGUF without tokenizer.ggml.merges): the score and GGUF
  // token type of each model token. With `merges` empty the tokenizer derives its merges from them
  // (derive_merges_from_scores) when it is built, after the loader has closed the file.
  std::vector<float> scores;
  std::vector<int32_t> token_types;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  std::vector<int32_t> stop_ids;  // generation stops on any of these
  bool add_bos = true;            // default for EncodeOptions::add_bos in callers that ask
  std::string chat_template;      // Jinja source, empty if the files declare none
};

// SentencePiece-style vocab (GGUF tokenizer.ggml.model = "llama") -> ranked merges, built the way
// the HF converter builds tokenizer.json from the same model: every split of a piece into two vocab
// pieces is a merge; ranked by the merged piece's score (higher first), then longer left part, then
// longer right part (lengths in code points), then merged id, left id, right id. `types` are GGUF
// token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); control, unknown,
// unused and byte pieces are never merge results. `user_defined_score` replaces the score of
// user-defined pieces (llama.cpp writes -1000 there; SentencePiece's own score for them is 0).
struct RankedMerges {
  std::vector<std::pair<int32_t, int32_t>> pairs;  // (left id, right id), rank = index
  std::vector<int32_t> results;                    // rank -> merged id
};
// Ids from scores.size() on (added tokens appended after the scored vocabulary) are neither parts
// nor results of merges.
RankedMerges derive_merges_from_scores(const Vocabulary& tokens, const std::vector<float>& scores,
                                       const std::vector<int32_t>& types,
                                       float user_defined_score = 0.0f);

struct EncodeOptions {
  // Prepend the BOS id (HF add_special_tokens=true); unset: as the model files say (add_bos_token).
  std::optional<bool> add_bos;
  bool parse_special =
      true;  // false: special tokens in the text are plain text (other added tokens still match)
};

class BpeMergeTable;
class AddedTokenMatcher;

class Tokenizer {
 public:
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Any bytes are accepted; bytes that are not well-formed UTF-8 are encoded as their <0xNN>
  // tokens.
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options = {}) const;

  // Throws TokenizerError for an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  size_t vocab_size() const { return vocab_.size(); }
  // Ids below this are the BPE model's (and the network's embedding rows); added tokens may follow.
  size_t model_vocab_size() const { return spec_.model_vocab_size; }
  std::string_view token_text(int32_t id) const;  // throws for an unknown id
  std::optional<int32_t> token_id(std::string_view text) const;
  bool is_special(int32_t id) const;
  // The byte a <0xNN> token stands for, or -1.
  int byte_value(int32_t id) const { return valid_id(id) ? byte_of_[static_cast<size_t>(id)] : -1; }

  int32_t bos_id() const { return spec_.bos_id; }
  int32_t eos_id() const { return spec_.eos_id; }
  int32_t unk_id() const { return spec_.unk_id; }
  int32_t pad_id() const { return spec_.pad_id; }
  bool add_bos_by_default() const { return spec_.add_bos; }
  const std::vector<int32_t>& stop_ids() const { return spec_.stop_ids; }
  bool is_stop(int32_t id) const;
  const std::string& chat_template_source() const { return spec_.chat_template; }
  const std::string& source() const { return spec_.source; }
  size_t merge_count() const;
  // Bytes held by the vocabulary and the merge table (the bulk of a tokenizer's memory).
  size_t memory_bytes() const;

  // Appends the decoded text of one non-byte token (U+2581 turned into spaces).
  void append_piece(int32_t id, std::string& out) const;
  bool valid_id(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < vocab_.size(); }

 private:
  void encode_word(std::string_view text, std::vector<int32_t>& out) const;
  int32_t lookup_code_point(uint32_t cp) const;
  void append_bytes_as_tokens(std::string_view bytes, std::vector<int32_t>& out) const;

  // The spec without its tokens and merges: those move into vocab_ and merges_ (packed), and the
  // vectors that held them are freed during construction.
  TokenizerSpec spec_;
  Vocabulary vocab_;
  std::vector<int32_t> bmp_id_;                      // single-code-point token per BMP code point
  std::unordered_map<uint32_t, int32_t> astral_id_;  // the same above U+FFFF
  std::vector<int32_t> byte_token_;                  // byte -> <0xNN> id (or unk, or -1)
  std::vector<int16_t> byte_of_;                     // id -> byte of a <0xNN> token, or -1
  std::unique_ptr<BpeMergeTable> merges_;
  std::unique_ptr<AddedTokenMatcher> added_;
};

// Turns ids into text one at a time. Only complete UTF-8 is returned, and the concatenation of
// every push() plus finish() equals Tokenizer::decode of the same ids. A run of <0xNN> byte tokens
// is held back until the run ends (the reference turns a whole run into U+FFFD when any part of it
// is malformed, so no prefix of a run can be released early without risking a different result).
class StreamingDetokenizer {
 public:
  StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}

  std::string push(int32_t id);  // throws TokenizerError for an unknown id
  std::string finish();          // releases a pending byte run; the detokenizer can be reused after
  bool has_pending() const { return !pending_.empty(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of the current <0xNN> run
};

// Appends a run of byte-token bytes the way HF's ByteFallback decoder does: the bytes as text when
// the whole run is well-formed UTF-8, otherwise one U+FFFD per byte.
void append_byte_run(std::string& out, std::string_view bytes);

}  // namespace gemmax
