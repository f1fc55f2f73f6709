// libFuzzer target for the tokenizer: arbitrary bytes (valid UTF-8 or not) as text to encode, and
// the same bytes read as token ids to decode. Checks, beyond "no crash, no hang": decoded text is
// always valid UTF-8, streaming decode equals one-shot decode, and well-formed text without U+2581
// round-trips. Uses the tokenizer named by $GEMMAX_FUZZ_TOKENIZER (tokenizer.json, directory or
// .gguf) when set, otherwise a small built-in vocabulary with added tokens, merges and byte
// fallback.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/loader.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

gemmax::TokenizerSpec builtin_spec() {
  gemmax::TokenizerSpec s;
  s.source = "fuzz-builtin";
  s.tokens = {"<pad>",           "<eos>", "<bos>", "<unk>",
              "<start_of_turn>", "\n",    "\n\n",  "\xE2\x96\x81\xE2\x96\x81"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    s.tokens.push_back(name);
  }
  const size_t first_piece = s.tokens.size();
  for (const char* t : {"\xE2\x96\x81", "a", "b", "ab",
                        "\xE2\x96\x81"
                        "a",
                        "\xE2\x96\x81"
                        "ab",
                        "ba", "<", ">", "\xE4\xB8\xAD", "\n"})
    s.tokens.push_back(t);
  s.added.assign(s.tokens.size(), 0);
  s.special.assign(s.tokens.size(), 0);
  for (int id = 0; id < 8; ++id) s.added[static_cast<size_t>(id)] = 1;
  for (int id = 0; id < 5; ++id) s.special[static_cast<size_t>(id)] = 1;
  const auto p = [&](size_t i) { return static_cast<int32_t>(first_piece + i); };
  s.merges = {{p(1), p(2)}, {p(0), p(1)}, {p(4), p(2)}, {p(2), p(1)}, {p(0), p(0)}};
  s.bos_id = 2, s.eos_id = 1, s.unk_id = 3, s.pad_id = 0;
  return s;
}

const gemmax::Tokenizer& tokenizer() {
  static const std::unique_ptr<gemmax::Tokenizer> tok = [] {
    if (const char* path = std::getenv("GEMMAX_FUZZ_TOKENIZER"))
      return gemmax::load_tokenizer(path);
    return std::make_unique<gemmax::Tokenizer>(builtin_spec());
  }();
  return *tok;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tokenizer fuzzer: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gemmax::Tokenizer& tok = tokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);

  for (const bool special : {true, false}) {
    const auto ids = tok.encode(text, {.add_bos = false, .parse_special = special});
    const std::string back = tok.decode(ids);
    check(gemmax::utf8::is_valid(back), "decode produced invalid UTF-8");
    if (gemmax::utf8::is_valid(text) && text.find("\xE2\x96\x81") == std::string::npos)
      check(back == text, "well-formed text without U+2581 did not round-trip");
  }

  // The bytes as little-endian 16-bit ids, folded into the vocabulary.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2)
    ids.push_back(static_cast<int32_t>((data[i] | (data[i + 1] << 8)) % tok.vocab_size()));
  for (const bool skip : {false, true}) {
    const std::string once = tok.decode(ids, skip);
    check(gemmax::utf8::is_valid(once), "decode produced invalid UTF-8");
    gemmax::StreamingDetokenizer stream(tok, skip);
    std::string joined;
    for (const int32_t id : ids) joined += stream.push(id);
    joined += stream.finish();
    check(joined == once, "streaming decode differs from one-shot decode");
  }
  return 0;
}
