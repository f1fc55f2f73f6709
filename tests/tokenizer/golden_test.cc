// Every golden case in shared/testdata/gemma3-tokenizer, against the real tokenizer.json.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "test_data.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/loader.h"
#include "tokenizer/tokenizer.h"

namespace gemmax {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

const Tokenizer& tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    const auto start = std::chrono::steady_clock::now();
    auto t = load_tokenizer(testing::shared_tokenizer_dir() + "/tokenizer.json");
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    std::printf("loaded tokenizer.json in %.2f s\n", took.count());
    return t;
  }();
  return *tok;
}

void FileDeclarations() {
  const Tokenizer& tok = tokenizer();
  EXPECT_EQ(tok.vocab_size(), 262145u);
  EXPECT_EQ(tok.merge_count(), 514906u);
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 106);  // tokenizer_config.json: eos_token is <end_of_turn>
  EXPECT_TRUE(tok.add_bos_by_default());
  EXPECT_TRUE(tok.is_stop(1));
  EXPECT_TRUE(tok.is_stop(106));
  EXPECT_FALSE(tok.is_stop(2));
  for (int32_t id : {0, 1, 2, 3, 105, 106, 255999, 256000, 262144})
    EXPECT_TRUE(tok.is_special(id)) << id;
  for (int32_t id : {4, 5, 107, 138, 168, 255968, 6000}) EXPECT_FALSE(tok.is_special(id)) << id;
}

void EncodeCases() {
  const Tokenizer& tok = tokenizer();
  const auto cases = testing::read_jsonl(testing::shared_tokenizer_dir() + "/encode_cases.jsonl");
  ASSERT_GE(cases.size(), 500u);
  for (const json& c : cases) {
    const std::string id = c["id"];
    const std::string text = c["text"];
    const Ids ids = tok.encode(text, {.add_bos = false});
    ASSERT_EQ(ids, c["ids"].get<Ids>()) << id << " " << c["category"];
    EXPECT_EQ(tok.encode(text, {.add_bos = true}), c["ids_with_special"].get<Ids>()) << id;
    std::vector<std::string> tokens;
    for (const int32_t t : ids) tokens.emplace_back(tok.token_text(t));
    EXPECT_EQ(tokens, c["tokens"].get<std::vector<std::string>>()) << id;
    const std::string decoded = tok.decode(ids);
    EXPECT_EQ(decoded, c["decoded"].get<std::string>()) << id;
    EXPECT_EQ(decoded == text, c["roundtrip"].get<bool>()) << id;
    const Ids with = c["ids_with_special"].get<Ids>();
    EXPECT_EQ(tok.decode(with, false), c["decoded_with_special"].get<std::string>()) << id;
    EXPECT_EQ(tok.decode(with, true), c["decoded_skip_special"].get<std::string>()) << id;
  }
}

void DecodeCasesOneShotAndStreaming() {
  const Tokenizer& tok = tokenizer();
  const auto cases = testing::read_jsonl(testing::shared_tokenizer_dir() + "/decode_cases.jsonl");
  ASSERT_GE(cases.size(), 200u);
  for (const json& c : cases) {
    const std::string id = c["id"];
    const Ids ids = c["ids"].get<Ids>();
    std::vector<std::string> tokens;
    for (const int32_t t : ids) tokens.emplace_back(tok.token_text(t));
    EXPECT_EQ(tokens, c["tokens"].get<std::vector<std::string>>()) << id;
    for (const bool skip : {false, true}) {
      const std::string expected = c[skip ? "decoded_skip_special" : "decoded"];
      EXPECT_EQ(tok.decode(ids, skip), expected) << id << " skip=" << skip;
      StreamingDetokenizer stream(tok, skip);
      std::string joined;
      for (const int32_t t : ids) joined += stream.push(t);
      joined += stream.finish();
      EXPECT_EQ(joined, expected) << id << " streaming skip=" << skip;
    }
  }
}

void ChatTemplateCasesTokenize() {
  const Tokenizer& tok = tokenizer();
  const ChatTemplate tmpl = ChatTemplate::for_tokenizer(tok);
  const auto cases =
      testing::read_jsonl(testing::shared_tokenizer_dir() + "/chat_template_cases.jsonl");
  int checked = 0;
  for (const json& c : cases) {
    if (!c.contains("expected_ids")) continue;
    const std::string text = tmpl.render(c["messages"], c["add_generation_prompt"].get<bool>());
    EXPECT_EQ(tok.encode(text, {.add_bos = false}), c["expected_ids"].get<Ids>()) << c["id"];
    ++checked;
  }
  EXPECT_GE(checked, 50);
}

void LongTextWithoutSpacesIsFast() {
  // 1 MB with no spaces or added tokens is ONE BPE word; it must stay near-linear.
  const Tokenizer& tok = tokenizer();
  std::string text;
  const std::string chunk =
      "Thequickbrownfoxjumpsoverthelazydog\xE4\xB8\xAD\xE6\x96\x87\xF0\x9F\x98\x80";
  while (text.size() < (1u << 20)) text += chunk;
  const auto start = std::chrono::steady_clock::now();
  const Ids ids = tok.encode(text, {.add_bos = false});
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(tok.decode(ids), text);
  // Generous bound (Debug and sanitizer builds too); a quadratic loop would take minutes.
  EXPECT_LT(took.count(), 20.0);
  std::printf("1 MB without spaces: %.3f s, %zu ids\n", took.count(), ids.size());
}

// One test, so that ctest (one process per test) parses the 33 MB tokenizer.json once.
TEST(Golden, AllCases) {
  FileDeclarations();
  EncodeCases();
  DecodeCasesOneShotAndStreaming();
  ChatTemplateCasesTokenize();
  LongTextWithoutSpacesIsFast();
}

}  // namespace
}  // namespace gemmax
