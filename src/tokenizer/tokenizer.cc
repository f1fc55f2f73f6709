#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "tokenizer/bpe.h"
#include "tokenizer/utf8.h"

namespace gemmax {

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's space

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xNN>" token (what HF's ByteFallback decoder accepts), or -1.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  const int hi = hex_digit(t[3]);
  const int lo = hex_digit(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

size_t count_code_points(std::string_view s) {
  size_t n = 0;
  uint32_t cp = 0;
  for (size_t pos = 0; pos < s.size(); ++n) {
    const size_t len = utf8::decode(s, pos, cp);
    pos += len == 0 ? 1 : len;
  }
  return n;
}

// The byte offset after the first `count` code points of s (the same stepping as
// count_code_points).
size_t code_point_offset(std::string_view s, size_t count) {
  size_t pos = 0;
  uint32_t cp = 0;
  for (size_t i = 0; i < count && pos < s.size(); ++i) {
    const size_t len = utf8::decode(s, pos, cp);
    pos += len == 0 ? 1 : len;
  }
  return pos;
}

// 16 bytes per candidate merge (Gemma 3: 514906 of them): the right part's id is found again after
// sorting, from the merged text and the left part's length.
struct Candidate {
  float score;
  int32_t result, left;
  uint16_t left_len, right_len;  // in code points
};

// The converter's order: higher score, then longer left part, longer right part, lower merged id.
// The tie-breaks on the left and right ids never decide anything: equal result and left length
// mean the same split. A total order (scores are never NaN here), so the result does not depend
// on how the candidates were found or sorted.
bool ranks_before(const Candidate& a, const Candidate& b) {
  if (a.score != b.score) return a.score > b.score;
  return std::tie(b.left_len, b.right_len, a.result) < std::tie(a.left_len, a.right_len, b.result);
}

// Appends the candidates whose merged piece is one of tokens [begin, end) to `found`, sorted.
// `found` has room for one per byte boundary inside those tokens, so nothing is allocated here
// (on a helper thread, glibc would keep the freed memory in that thread's arena: +9 MB of RSS).
void find_candidates(const Vocabulary& tokens, const std::vector<float>& scores,
                     const std::vector<int32_t>& types, float user_defined_score, size_t begin,
                     size_t end, std::vector<Candidate>& found) {
  const auto scored = static_cast<int32_t>(scores.size());  // later ids are not parts
  for (size_t id = begin; id < end; ++id) {
    const int32_t type = types.empty() ? 1 : types[id];
    if (type != 1 && type != 4) continue;  // only normal and user-defined pieces are merge results
    const std::string_view text = tokens.text(id);
    const float score = type == 4 ? user_defined_score : scores[id];
    const size_t total = count_code_points(text);
    if (total > UINT16_MAX)
      throw TokenizerError("token " + std::to_string(id) + " is longer than " +
                           std::to_string(UINT16_MAX) + " code points");
    uint16_t left_len = 0;
    uint32_t cp = 0;
    for (size_t split = 0; split < text.size();) {
      const size_t len = utf8::decode(text, split, cp);
      split += len == 0 ? 1 : len;
      ++left_len;
      if (split >= text.size()) break;
      const int32_t left = tokens.find(text.substr(0, split));
      if (left < 0 || left >= scored) continue;
      const int32_t right = tokens.find(text.substr(split));
      if (right < 0 || right >= scored) continue;
      found.push_back({score, static_cast<int32_t>(id), left, left_len,
                       static_cast<uint16_t>(total - left_len)});
    }
  }
  std::sort(found.begin(), found.end(), ranks_before);
}

}  // namespace

RankedMerges derive_merges_from_scores(const Vocabulary& tokens, const std::vector<float>& scores,
                                       const std::vector<int32_t>& types,
                                       float user_defined_score) {
  if (scores.size() > tokens.size() || (!types.empty() && types.size() != scores.size()))
    throw TokenizerError("tokenizer scores/types do not match the token count");
  for (size_t i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i]))  // would break the sort's ordering
      throw TokenizerError("the score of token " + std::to_string(i) + " is NaN");
  }
  if (std::isnan(user_defined_score)) throw TokenizerError("the user-defined score is NaN");
  const size_t scored = scores.size();

  // The search (~2M text lookups, most of a GGUF tokenizer's load) and the sort run in parts on
  // up to 4 threads, one range of tokens each; the sorted parts are merged in order below, so the
  // result is the same for any number of parts.
  const size_t parts =
      std::clamp<size_t>(std::thread::hardware_concurrency(), 1, scored < 4096 ? 1 : 4);
  std::vector<std::vector<Candidate>> found(parts);
  for (size_t p = 0; p < parts; ++p) {
    size_t boundaries = 0;  // an upper bound of the part's candidates; untouched room costs no RSS
    for (size_t id = p * scored / parts; id < (p + 1) * scored / parts; ++id)
      boundaries += std::max<size_t>(tokens.text(id).size(), 1) - 1;
    found[p].reserve(boundaries);
  }
  std::vector<std::exception_ptr> errors(parts);
  auto search = [&](size_t p) {
    try {
      find_candidates(tokens, scores, types, user_defined_score, p * scored / parts,
                      (p + 1) * scored / parts, found[p]);
    } catch (...) {
      errors[p] = std::current_exception();
    }
  };
  {
    std::vector<std::jthread> helpers;
    for (size_t p = 1; p < parts; ++p) helpers.emplace_back(search, p);
    search(0);
  }  // joined
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);

  size_t total = 0;
  for (const auto& f : found) total += f.size();
  RankedMerges merges;
  merges.pairs.reserve(total);
  merges.results.reserve(total);
  std::vector<size_t> next(parts, 0);
  for (size_t n = 0; n < total; ++n) {
    size_t best = parts;
    for (size_t p = 0; p < parts; ++p) {
      if (next[p] < found[p].size() &&
          (best == parts || ranks_before(found[p][next[p]], found[best][next[best]])))
        best = p;
    }
    const Candidate& c = found[best][next[best]++];
    const std::string_view text = tokens.text(static_cast<size_t>(c.result));
    const size_t split = code_point_offset(text, c.left_len);
    merges.pairs.emplace_back(c.left, tokens.find(text.substr(split)));
    merges.results.push_back(c.result);
  }
  return merges;
}

Tokenizer::Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
  if (spec_.vocabulary) {
    if (!spec_.tokens.empty())
      throw TokenizerError(spec_.source + ": tokenizer spec has both token texts and a vocabulary");
    vocab_ = std::move(*spec_.vocabulary);
    spec_.vocabulary.reset();
  } else {
    // The token vector is freed at the end of this scope, before the merge table is built, so
    // the two never coexist at their full size (~9 MB of std::strings for Gemma 3).
    const std::vector<std::string> tokens = std::move(spec_.tokens);
    spec_.tokens.clear();
    vocab_ = Vocabulary(tokens);
  }
  if (vocab_.size() == 0)
    throw TokenizerError(spec_.source + ": tokenizer has an empty vocabulary");
  const size_t n = vocab_.size();
  spec_.added.resize(n, 0);
  spec_.special.resize(n, 0);
  if (spec_.model_vocab_size == 0 || spec_.model_vocab_size > n) spec_.model_vocab_size = n;
  for (int32_t id : {spec_.bos_id, spec_.eos_id, spec_.unk_id, spec_.pad_id}) {
    if (id >= static_cast<int32_t>(n))
      throw TokenizerError(spec_.source + ": special token id " + std::to_string(id) +
                           " is outside the vocabulary of " + std::to_string(n));
  }

  bmp_id_.assign(0x10000, -1);
  byte_of_.assign(n, -1);
  for (size_t i = 0; i < n; ++i) {
    const std::string_view t = vocab_.text(i);
    const auto id = static_cast<int32_t>(i);
    byte_of_[i] = static_cast<int16_t>(parse_byte_token(t));
    uint32_t cp = 0;
    if (i < spec_.model_vocab_size && !t.empty() && utf8::decode(t, 0, cp) == t.size()) {
      if (cp < 0x10000) {
        if (bmp_id_[cp] < 0) bmp_id_[cp] = id;
      } else {
        astral_id_.emplace(cp, id);
      }
    }
  }
  byte_token_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_token_[static_cast<size_t>(b)] = vocab_.find(name);
  }
  added_ = std::make_unique<AddedTokenMatcher>(vocab_, spec_.added, spec_.special);

  if (spec_.merges.empty() && !spec_.scores.empty()) {
    try {
      RankedMerges derived = derive_merges_from_scores(vocab_, spec_.scores, spec_.token_types);
      spec_.merges = std::move(derived.pairs);
      spec_.merge_results = std::move(derived.results);
    } catch (const TokenizerError& e) {
      throw TokenizerError(spec_.source + ": " + e.what());
    }
  }
  std::vector<float>().swap(spec_.scores);
  std::vector<int32_t>().swap(spec_.token_types);
  const std::vector<std::pair<int32_t, int32_t>> merges = std::move(spec_.merges);
  std::vector<int32_t> results = std::move(spec_.merge_results);
  spec_.merges.clear();
  spec_.merge_results.clear();
  const bool known = results.size() == merges.size();
  results.resize(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto [l, r] = merges[rank];
    if (!valid_id(l) || !valid_id(r))
      throw TokenizerError(spec_.source + ": merge " + std::to_string(rank) +
                           " names an unknown id");
    const std::string_view left = vocab_.text(static_cast<size_t>(l));
    const std::string_view right = vocab_.text(static_cast<size_t>(r));
    // A result the loader gave is checked against the texts (no hash lookup needed).
    const std::string_view given = known && valid_id(results[rank])
                                       ? vocab_.text(static_cast<size_t>(results[rank]))
                                       : std::string_view();
    if (known && given.size() == left.size() + right.size() && given.starts_with(left) &&
        given.ends_with(right))
      continue;
    joined.assign(left).append(right);
    const int32_t joined_id = vocab_.find(joined);
    if (joined_id < 0)
      throw TokenizerError(spec_.source + ": merge " + std::to_string(rank) + " (\"" +
                           std::string(left) + "\" \"" + std::string(right) + "\") makes \"" +
                           joined + "\", which is not in the vocabulary");
    results[rank] = joined_id;
  }
  try {
    merges_ = std::make_unique<BpeMergeTable>(merges, results);
  } catch (const std::length_error& e) {  // ids too wide for the packed table
    throw TokenizerError(spec_.source + ": " + e.what());
  }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

int32_t Tokenizer::lookup_code_point(uint32_t cp) const {
  if (cp < 0x10000) return bmp_id_[cp];
  const auto it = astral_id_.find(cp);
  return it == astral_id_.end() ? -1 : it->second;
}

void Tokenizer::append_bytes_as_tokens(std::string_view bytes, std::vector<int32_t>& out) const {
  for (const char c : bytes) {
    const int32_t id = byte_token_[static_cast<unsigned char>(c)];
    if (id >= 0) {
      out.push_back(id);
    } else if (spec_.unk_id >= 0) {
      // No byte token: unknown, with consecutive unknowns fused into one (HF fuse_unk).
      if (out.empty() || out.back() != spec_.unk_id) out.push_back(spec_.unk_id);
    } else {
      throw TokenizerError(spec_.source + ": text has a character the vocabulary cannot express " +
                           "(no byte tokens and no unknown token)");
    }
  }
}

void Tokenizer::encode_word(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<int32_t> symbols;
  symbols.reserve(text.size());
  const int32_t space_id = lookup_code_point(0x2581);
  uint32_t cp = 0;
  for (size_t pos = 0; pos < text.size();) {
    // The normalizer's " " -> U+2581 happens here, symbol by symbol.
    if (text[pos] == ' ') {
      if (space_id >= 0)
        symbols.push_back(space_id);
      else
        append_bytes_as_tokens(kSpaceMarker, symbols);
      ++pos;
      continue;
    }
    const size_t len = utf8::decode(text, pos, cp);
    if (len == 0) {  // not UTF-8: the stray byte stands for itself
      append_bytes_as_tokens(text.substr(pos, 1), symbols);
      ++pos;
      continue;
    }
    const int32_t id = lookup_code_point(cp);
    if (id >= 0)
      symbols.push_back(id);
    else
      append_bytes_as_tokens(text.substr(pos, len), symbols);
    pos += len;
  }
  bpe_merge(*merges_, symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (options.add_bos.value_or(spec_.add_bos) && spec_.bos_id >= 0) out.push_back(spec_.bos_id);
  for (size_t pos = 0; pos < text.size();) {
    const auto match = added_->find(text, pos, options.parse_special);
    if (match.begin > pos) encode_word(text.substr(pos, match.begin - pos), out);
    if (match.id < 0) break;
    out.push_back(match.id);
    pos = match.begin + match.length;
  }
  return out;
}

std::string_view Tokenizer::token_text(int32_t id) const {
  if (!valid_id(id))
    throw TokenizerError(spec_.source + ": token id " + std::to_string(id) +
                         " is outside the vocabulary of " + std::to_string(vocab_size()));
  return vocab_.text(static_cast<size_t>(id));
}

void Tokenizer::append_piece(int32_t id, std::string& out) const {
  const std::string_view text = vocab_.text(static_cast<size_t>(id));
  for (size_t pos = 0;;) {
    const size_t hit = text.find(kSpaceMarker, pos);
    if (hit == std::string_view::npos) {
      out.append(text.substr(pos));
      return;
    }
    out.append(text.substr(pos, hit - pos)).push_back(' ');
    pos = hit + kSpaceMarker.size();
  }
}

size_t Tokenizer::merge_count() const { return merges_->size(); }

size_t Tokenizer::memory_bytes() const { return vocab_.memory_bytes() + merges_->memory_bytes(); }

std::optional<int32_t> Tokenizer::token_id(std::string_view text) const {
  const int32_t id = vocab_.find(text);
  if (id < 0) return std::nullopt;
  return id;
}

bool Tokenizer::is_special(int32_t id) const {
  return valid_id(id) && spec_.special[static_cast<size_t>(id)] != 0;
}

bool Tokenizer::is_stop(int32_t id) const {
  return std::find(spec_.stop_ids.begin(), spec_.stop_ids.end(), id) != spec_.stop_ids.end();
}

void append_byte_run(std::string& out, std::string_view bytes) {
  if (utf8::is_valid(bytes)) {
    out.append(bytes);
    return;
  }
  for (size_t i = 0; i < bytes.size(); ++i) out.append("\xEF\xBF\xBD");  // U+FFFD per byte
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  StreamingDetokenizer stream(*this, skip_special);
  std::string out;
  for (const int32_t id : ids) out += stream.push(id);
  out += stream.finish();
  return out;
}

std::string StreamingDetokenizer::push(int32_t id) {
  const Tokenizer& tok = *tokenizer_;
  tok.token_text(id);  // validates the id, throwing for an unknown one
  // Skipped special tokens vanish without ending a byte run.
  if (skip_special_ && tok.is_special(id)) return {};
  const int byte = tok.byte_value(id);
  if (byte >= 0) {
    pending_.push_back(static_cast<char>(byte));
    return {};
  }
  std::string out = finish();
  tok.append_piece(id, out);
  return out;
}

std::string StreamingDetokenizer::finish() {
  std::string out;
  if (!pending_.empty()) append_byte_run(out, pending_);
  pending_.clear();
  return out;
}

}  // namespace gemmax
