#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "test_data.h"

namespace gemmax {
namespace {

using nlohmann::json;

std::string real_template() {
  std::ifstream in(testing::shared_tokenizer_dir() + "/tokenizer_config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str())["chat_template"].get<std::string>();
}

// The rendered text of every golden case (ids are checked in golden_test.cc).
TEST(ChatTemplate, GoldenCasesRenderExactly) {
  const ChatTemplate tmpl(real_template(), "<bos>");
  const auto cases =
      testing::read_jsonl(testing::shared_tokenizer_dir() + "/chat_template_cases.jsonl");
  ASSERT_GE(cases.size(), 70u);
  for (const json& c : cases) {
    const std::string id = c["id"];
    if (c.contains("expected")) {
      EXPECT_EQ(tmpl.render(c["messages"], c["add_generation_prompt"].get<bool>()),
                c["expected"].get<std::string>())
          << id;
      continue;
    }
    const json& err = c["expected_error"];
    try {
      tmpl.render(c["messages"], c["add_generation_prompt"].get<bool>());
      ADD_FAILURE() << id << ": expected an error";
    } catch (const ChatTemplateError& e) {
      if (err["raised_by"] == "raise_exception") {
        EXPECT_TRUE(e.from_template()) << id;
        EXPECT_EQ(e.what(), err["message"].get<std::string>()) << id;
      } else {
        EXPECT_FALSE(e.from_template()) << id;
      }
    }
  }
}

std::string render(const json& messages, bool gen = false) {
  return ChatTemplate("", "<bos>").render(messages, gen);
}

TEST(ChatTemplate, OwnCases) {
  EXPECT_EQ(render(json::parse(R"([{"role":"system","content":"S"}])"), true),
            "<bos><start_of_turn>model\n");
  // Missing content renders empty (Jinja Undefined iterates as empty).
  EXPECT_EQ(render(json::parse(R"([{"role":"user"}])")),
            "<bos><start_of_turn>user\n<end_of_turn>\n");
  // Object content iterates over its keys: nothing rendered.
  EXPECT_EQ(render(json::parse(R"([{"role":"user","content":{"type":"text"}}])")),
            "<bos><start_of_turn>user\n<end_of_turn>\n");
  // Non-string text parts go through str() before trim.
  EXPECT_EQ(
      render(json::parse(
          R"([{"role":"user","content":[{"type":"text","text":5},{"type":"text","text":null},{"type":"text"},{"type":"image"},"x"]}])")),
      "<bos><start_of_turn>user\n5None<start_of_image><end_of_turn>\n");
  // assistant -> model; a system message after the first keeps its role name.
  EXPECT_EQ(
      render(json::parse(
          R"([{"role":"user","content":" a "},{"role":"assistant","content":"b\n"},{"role":"user","content":"c"}])")),
      "<bos><start_of_turn>user\na<end_of_turn>\n<start_of_turn>model\nb<end_of_turn>\n"
      "<start_of_turn>user\nc<end_of_turn>\n");
  // System prefix goes only to the first turn, untrimmed.
  EXPECT_EQ(render(json::parse(
                R"([{"role":"system","content":[{"text":" S "}]},{"role":"user","content":"u"}])")),
            "<bos><start_of_turn>user\n S \n\nu<end_of_turn>\n");
}

TEST(ChatTemplate, Errors) {
  auto error_of = [](const json& m) -> std::pair<std::string, bool> {
    try {
      render(m);
    } catch (const ChatTemplateError& e) {
      return {e.what(), e.from_template()};
    }
    return {"no error", false};
  };
  const std::string alternate =
      "Conversation roles must alternate user/assistant/user/assistant/...";
  EXPECT_EQ(error_of(json::parse(R"([{"role":"assistant","content":"a"}])")),
            std::make_pair(alternate, true));
  // Missing role: the alternation check fires first in a user slot...
  EXPECT_EQ(error_of(json::parse(R"([{"content":"a"}])")), std::make_pair(alternate, true));
  // ...and a Jinja error (Undefined + str) in an assistant slot.
  EXPECT_FALSE(error_of(json::parse(R"([{"role":"user","content":"a"},{"content":"b"}])")).second);
  EXPECT_FALSE(
      error_of(json::parse(R"([{"role":"user","content":"a"},{"role":5,"content":"b"}])")).second);
  EXPECT_EQ(error_of(json::parse(R"([{"role":"user","content":3}])")),
            std::make_pair(std::string("Invalid content type"), true));
  EXPECT_FALSE(error_of(json::parse(R"([])")).second);
  EXPECT_NE(error_of(json::parse(R"([])")).first, "no error");
  EXPECT_FALSE(error_of(json::parse(R"([{"role":"system","content":null}])")).second);
  EXPECT_NE(error_of(json::parse(R"([{"role":"system","content":[]}])")).first, "no error");
}

TEST(ChatTemplate, RecognisesOnlyGemma3) {
  EXPECT_TRUE(is_gemma3_chat_template(real_template()));
  EXPECT_THROW(ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}", "<s>"),
               std::invalid_argument);
}

TEST(PythonStr, MatchesPythonFormatting) {
  EXPECT_EQ(python_str(json(nullptr)), "None");
  EXPECT_EQ(python_str(json(true)), "True");
  EXPECT_EQ(python_str(json(-12)), "-12");
  EXPECT_EQ(python_str(json(1.5)), "1.5");
  EXPECT_EQ(python_str(json(100.0)), "100.0");
  EXPECT_EQ(python_str(json(1e16)), "1e+16");
  EXPECT_EQ(python_str(json(1.25e-5)), "1.25e-05");
  EXPECT_EQ(python_str(json(0.0001)), "0.0001");
  EXPECT_EQ(python_str(json(123456789012345.6)), "123456789012345.6");
  EXPECT_EQ(python_str(json::parse(R"([1, "a'b", "c", [true]])")), R"([1, "a'b", 'c', [True]])");
  EXPECT_EQ(python_str(json::parse(R"({"k": "v\n"})")), R"({'k': 'v\n'})");
}

}  // namespace
}  // namespace gemmax
