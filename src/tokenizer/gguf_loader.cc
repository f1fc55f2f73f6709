// GGUF tokenizer.ggml.* metadata -> TokenizerSpec, producing the same tokenizer as tokenizer.json:
//  - llama.cpp's converter writes added tokens' spaces as " " (it "pre-normalizes" them); the text
//    is matched before the normalizer, so they are turned back into U+2581 here;
//  - control, user-defined, unknown and unused tokens are the added tokens HF matches in raw text;
//  - without tokenizer.ggml.merges the spec carries scores and types, from which the tokenizer
//    derives its merges (derive_merges_from_scores) once the file is closed;
//  - HF's "special" set (what skip_special drops) is not recorded in GGUF token types (<mask> and
//    <unusedN> are control tokens yet not special; <start_of_image> is user-defined yet special),
//    so it is the declared special ids plus Gemma's turn and image markers.
#include <algorithm>
#include <array>
#include <cmath>

#include "io/gguf_reader.h"
#include "tokenizer/loader.h"
#include "tokenizer/vocabulary.h"

namespace gemmax {

namespace {

constexpr std::array<const char*, 5> kGemmaMarkers = {
    "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"};
constexpr std::array<const char*, 8> kSpecialIdKeys = {
    "tokenizer.ggml.bos_token_id",       "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",   "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.eot_token_id",       "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.mask_token_id"};

std::string spaces_to_marker(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c == ' ')
      out += "\xE2\x96\x81";
    else
      out += c;
  }
  return out;
}

int32_t declared_id(const GgufReader& gguf, const std::string& key, size_t vocab) {
  const auto v = gguf.find_int(key);
  if (!v) return -1;
  if (*v < 0 || static_cast<size_t>(*v) >= vocab)
    throw TokenizerError(gguf.path() + ": " + key + " = " + std::to_string(*v) +
                         " is outside the vocabulary");
  return static_cast<int32_t>(*v);
}

void read_merges(const GgufReader& gguf, std::vector<float> scores, std::vector<int32_t> types,
                 TokenizerSpec& spec) {
  const std::string key = "tokenizer.ggml.merges";
  const Vocabulary& id_of = *spec.vocabulary;
  if (const GgufValue* m = gguf.find(key)) {
    const std::vector<std::string_view> list = m->strings(key);
    for (size_t rank = 0; rank < list.size(); ++rank) {
      // "left right": the separator is the only space (token spaces are U+2581 in SentencePiece
      // vocabs).
      const std::string_view text = list[rank];
      const size_t sep = text.find(' ');
      const bool split = sep != std::string::npos && text.find(' ', sep + 1) == std::string::npos;
      const int32_t l = split ? id_of.find(text.substr(0, sep)) : -1;
      const int32_t r = split ? id_of.find(text.substr(sep + 1)) : -1;
      if (l < 0 || r < 0)
        throw TokenizerError(gguf.path() + ": " + key + "[" + std::to_string(rank) + "] \"" +
                             std::string(text) + "\" does not name two vocabulary tokens");
      spec.merges.emplace_back(l, r);
    }
    return;
  }
  if (scores.empty())
    throw TokenizerError(gguf.path() + ": neither tokenizer.ggml.merges nor tokenizer.ggml.scores");
  spec.scores = std::move(scores);
  spec.token_types = std::move(types);
}

void append_image_soft_token(TokenizerSpec& spec) {
  const auto& t = spec.tokens;
  const bool has_markers = std::find(t.begin(), t.end(), "<start_of_image>") != t.end() &&
                           std::find(t.begin(), t.end(), "<end_of_image>") != t.end();
  if (!has_markers || std::find(t.begin(), t.end(), "<image_soft_token>") != t.end()) return;
  spec.tokens.emplace_back("<image_soft_token>");
  spec.added.push_back(1);
  spec.special.push_back(0);  // marked special with the other Gemma markers below
}

}  // namespace

TokenizerSpec spec_from_gguf(const GgufReader& gguf) {
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  if (model != "llama")
    throw TokenizerError(gguf.path() + ": tokenizer.ggml.model \"" + model +
                         "\" is not supported (only SentencePiece-style \"llama\")");
  if (gguf.find_bool("tokenizer.ggml.add_space_prefix").value_or(false))
    throw TokenizerError(gguf.path() + ": tokenizer.ggml.add_space_prefix=true is not supported");

  TokenizerSpec spec;
  spec.source = gguf.path();
  const std::string tokens_key = "tokenizer.ggml.tokens";
  const GgufValue* tokens = gguf.find(tokens_key);
  if (tokens == nullptr) throw TokenizerError(gguf.path() + ": no " + tokens_key);
  const std::vector<std::string_view> texts = tokens->strings(tokens_key);
  spec.tokens.reserve(texts.size() + 1);  // + <image_soft_token>
  for (const std::string_view t : texts) spec.tokens.push_back(spaces_to_marker(t));
  const size_t n = spec.tokens.size();
  spec.model_vocab_size = n;

  std::vector<float> scores;
  if (const GgufValue* s = gguf.find("tokenizer.ggml.scores")) {
    for (const double v : s->numbers("tokenizer.ggml.scores"))
      scores.push_back(static_cast<float>(v));
  }
  std::vector<int32_t> types(n, 1);
  if (const GgufValue* t = gguf.find("tokenizer.ggml.token_type")) {
    const std::vector<double> list = t->numbers("tokenizer.ggml.token_type");
    if (list.size() != n)
      throw TokenizerError(gguf.path() + ": tokenizer.ggml.token_type has " +
                           std::to_string(list.size()) + " entries for " + std::to_string(n) +
                           " tokens");
    for (size_t i = 0; i < n; ++i) {
      // An integer id (0-5 in llama.cpp's enum); anything else is a malformed file.
      if (list[i] != std::floor(list[i]) || std::fabs(list[i]) > 1e9)
        throw TokenizerError(gguf.path() + ": tokenizer.ggml.token_type[" + std::to_string(i) +
                             "] is not an integer");
      types[i] = static_cast<int32_t>(list[i]);
    }
  }
  if (!scores.empty() && scores.size() != n)
    throw TokenizerError(gguf.path() + ": tokenizer.ggml.scores has " +
                         std::to_string(scores.size()) + " entries for " + std::to_string(n) +
                         " tokens");

  spec.added.assign(n, 0);
  spec.special.assign(n, 0);
  for (size_t i = 0; i < n; ++i) spec.added[i] = types[i] >= 2 && types[i] <= 5 ? 1 : 0;
  append_image_soft_token(spec);
  for (const char* key : kSpecialIdKeys) {
    if (const int32_t id = declared_id(gguf, key, n); id >= 0)
      spec.special[static_cast<size_t>(id)] = 1;
  }
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    for (const char* marker : kGemmaMarkers) {
      if (spec.tokens[i] == marker) spec.special[i] = 1;
    }
  }
  spec.bos_id = declared_id(gguf, "tokenizer.ggml.bos_token_id", n);
  spec.eos_id = declared_id(gguf, "tokenizer.ggml.eos_token_id", n);
  spec.unk_id = declared_id(gguf, "tokenizer.ggml.unknown_token_id", n);
  spec.pad_id = declared_id(gguf, "tokenizer.ggml.padding_token_id", n);
  spec.add_bos = gguf.find_bool("tokenizer.ggml.add_bos_token").value_or(true);
  spec.chat_template = gguf.find_string("tokenizer.chat_template").value_or("");

  // Generation ends at the declared eos/eot and at Gemma's own end markers when the vocab has them.
  std::vector<int32_t> stops = {spec.eos_id, declared_id(gguf, "tokenizer.ggml.eot_token_id", n)};
  for (size_t i = 0; i < n; ++i) {
    if (spec.tokens[i] == "<eos>" || spec.tokens[i] == "<end_of_turn>")
      stops.push_back(static_cast<int32_t>(i));
  }
  for (const int32_t id : stops) {
    if (id >= 0 && std::find(spec.stop_ids.begin(), spec.stop_ids.end(), id) == spec.stop_ids.end())
      spec.stop_ids.push_back(id);
  }

  // The texts are packed here and the std::strings freed: the derivation's ~15 MB of candidates
  // and merges (in the tokenizer's constructor) then never sit beside them.
  spec.vocabulary.emplace(spec.tokens);
  std::vector<std::string>().swap(spec.tokens);
  read_merges(gguf, std::move(scores), std::move(types), spec);
  return spec;
}

}  // namespace gemmax
