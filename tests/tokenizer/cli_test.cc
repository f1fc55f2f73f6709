// The tokenize / detokenize / chat-template subcommands on a small tokenizer.json written here.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "test_data.h"

namespace gemmax {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// <pad> <eos> <bos> <unk> <start_of_turn> <end_of_turn> \n, <0x00>..<0xFF> (7..262), then pieces.
json tiny_tokenizer_json() {
  json vocab = json::object();
  const std::vector<std::string> head = {"<pad>",           "<eos>",         "<bos>", "<unk>",
                                         "<start_of_turn>", "<end_of_turn>", "\n"};
  for (size_t i = 0; i < head.size(); ++i) vocab[head[i]] = i;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 7 + b;
  }
  const std::vector<std::string> pieces = {
      "\xE2\x96\x81", "h", "i", "hi", "\xE2\x96\x81hi", "u", "s", "e", "r", "m", "o", "d", "l"};
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = 263 + i;
  json added = json::array();
  for (size_t i = 0; i < head.size(); ++i)
    added.push_back({{"id", i},
                     {"content", head[i]},
                     {"special", i < 6},
                     {"normalized", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"single_word", false}});
  return {
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}},
      {"pre_tokenizer",
       {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}},
      {"model",
       {{"type", "BPE"},
        {"byte_fallback", true},
        {"fuse_unk", true},
        {"unk_token", "<unk>"},
        {"vocab", vocab},
        {"merges", json::array({json::array({"h", "i"}), json::array({"\xE2\x96\x81", "hi"})})}}}};
}

class TokenizerCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gemmax_tok_cli_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::ofstream(dir_ / "tokenizer.json") << tiny_tokenizer_json().dump();
    // The real Gemma 3 chat template, so the CLI goes through template recognition.
    std::ifstream cfg(testing::shared_tokenizer_dir() + "/tokenizer_config.json");
    std::stringstream ss;
    ss << cfg.rdbuf();
    const json real = json::parse(ss.str());
    std::ofstream(dir_ / "tokenizer_config.json") << json{
        {"add_bos_token", true},
        {"bos_token", "<bos>"},
        {"eos_token", "<end_of_turn>"},
        {"chat_template", real["chat_template"]}}.dump();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }

  // Runs `gemmax <args>` with `stdin_text` on std::cin; returns what it printed.
  std::string run(std::vector<std::string> args, const std::string& stdin_text = "") {
    CLI::App app;
    cli::register_tokenizer_commands(app);
    std::istringstream in(stdin_text);
    std::ostringstream out;
    auto* old_in = std::cin.rdbuf(in.rdbuf());
    auto* old_out = std::cout.rdbuf(out.rdbuf());
    args.insert(args.begin(), "gemmax");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    try {
      app.parse(static_cast<int>(argv.size()), argv.data());
    } catch (...) {
      std::cin.rdbuf(old_in), std::cout.rdbuf(old_out);
      throw;
    }
    std::cin.rdbuf(old_in), std::cout.rdbuf(old_out);
    return out.str();
  }
  fs::path dir_;
};

TEST_F(TokenizerCli, TokenizeJsonlAndStdin) {
  const std::string input =
      write("in.jsonl", "{\"text\":\"hi hi\"}\n\n{\"text\":\"\"}\n{\"text\":\"<bos>\\n\"}\n");
  EXPECT_EQ(run({"tokenize", "--model", dir_.string(), "--input", input}),
            "{\"ids\":[2,266,267]}\n{\"ids\":[2]}\n{\"ids\":[2,2,6]}\n");
  EXPECT_EQ(run({"tokenize", "--model", (dir_ / "tokenizer.json").string(), "--no-bos", "--input",
                 input}),
            "{\"ids\":[266,267]}\n{\"ids\":[]}\n{\"ids\":[2,6]}\n");
  EXPECT_EQ(run({"tokenize", "--model", dir_.string()}, "hi hi"), "{\"ids\":[2,266,267]}\n");
}

TEST_F(TokenizerCli, Detokenize) {
  const std::string input = write("ids.jsonl", "{\"ids\":[2,266,267,6]}\n{\"ids\":[7,200]}\n");
  EXPECT_EQ(run({"detokenize", "--model", dir_.string(), "--input", input}),
            // <0x00><0xC1> is one malformed run: U+FFFD for each byte, as HF does.
            "{\"text\":\"<bos>hi hi\\n\"}\n{\"text\":\"\xEF\xBF\xBD\xEF\xBF\xBD\"}\n");
  EXPECT_EQ(run({"detokenize", "--model", dir_.string(), "--skip-special"}, "{\"ids\":[2,266]}\n"),
            "{\"text\":\"hi\"}\n");
  EXPECT_THROW(run({"detokenize", "--model", dir_.string()}, "{\"ids\":[999]}\n"),
               std::runtime_error);
  EXPECT_THROW(run({"detokenize", "--model", dir_.string()}, "{\"ids\":5}\n"), std::runtime_error);
}

TEST_F(TokenizerCli, ChatTemplate) {
  const std::string input = write(
      "chat.jsonl",
      "{\"messages\":[{\"role\":\"user\",\"content\":\" hi \"}],\"add_generation_prompt\":true}\n"
      "{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}]}\n");
  EXPECT_EQ(
      run({"chat-template", "--model", dir_.string(), "--input", input}),
      "{\"text\":\"<bos><start_of_turn>user\\nhi<end_of_turn>\\n<start_of_turn>model\\n\"}\n"
      "{\"error\":\"Conversation roles must alternate user/assistant/user/assistant/...\"}\n");
  EXPECT_THROW(run({"chat-template", "--model", dir_.string()}),
               CLI::ParseError);  // --input required
}

TEST_F(TokenizerCli, BadModelPathIsAnError) {
  EXPECT_THROW(run({"tokenize", "--model", (dir_ / "missing.gguf").string()}, "x"), std::exception);
}

}  // namespace
}  // namespace gemmax
