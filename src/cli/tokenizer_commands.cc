// `gemmax tokenize`, `gemmax detokenize` and `gemmax chat-template`: JSON Lines in, JSON Lines out,
// so that whole case files can be checked against the reference in one run.
#include <CLI/CLI.hpp>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "cli/commands.h"
#include "model/default_model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/loader.h"
#include "tokenizer/tokenizer.h"

namespace gemmax::cli {

namespace {

using nlohmann::json;

struct TokenizerArgs {
  std::string model;
  std::string input;
  bool no_bos = false;
  bool skip_special = false;
};

std::unique_ptr<Tokenizer> open_model(const std::string& model) {
  return load_tokenizer(resolve_model_path(model));
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Calls `each` with every non-blank line of `path` (stdin when empty) parsed as JSON; errors name
// the file and line.
void for_each_jsonl(const std::string& path, const std::function<void(const json&)>& each) {
  std::ifstream file;
  if (!path.empty()) {
    file.open(path, std::ios::binary);
    if (!file) throw std::runtime_error(path + ": cannot open");
  }
  std::istream& in = path.empty() ? std::cin : file;
  const std::string name = path.empty() ? "<stdin>" : path;
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json row;
    try {
      row = json::parse(line);
    } catch (const json::exception& e) {
      throw std::runtime_error(name + ":" + std::to_string(line_no) + ": not JSON: " + e.what());
    }
    try {
      each(row);
    } catch (const json::exception& e) {
      throw std::runtime_error(name + ":" + std::to_string(line_no) + ": " + e.what());
    } catch (const TokenizerError& e) {
      throw std::runtime_error(name + ":" + std::to_string(line_no) + ": " + e.what());
    }
  }
}

const json& required(const json& row, const char* key, bool (json::*is)() const noexcept,
                     const char* what) {
  if (!row.is_object() || !row.contains(key) || !(row[key].*is)())
    throw std::runtime_error(std::string("each line needs \"") + key + "\" as " + what);
  return row[key];
}

void run_tokenize(const TokenizerArgs& args) {
  const auto tok = open_model(args.model);
  const EncodeOptions options{.add_bos = !args.no_bos};
  if (args.input.empty()) {
    const std::string text{std::istreambuf_iterator<char>(std::cin),
                           std::istreambuf_iterator<char>()};
    std::cout << dump({{"ids", tok->encode(text, options)}}) << '\n';
    return;
  }
  for_each_jsonl(args.input, [&](const json& row) {
    const std::string& text =
        required(row, "text", &json::is_string, "a string").get_ref<const std::string&>();
    std::cout << dump({{"ids", tok->encode(text, options)}}) << '\n';
  });
}

void run_detokenize(const TokenizerArgs& args) {
  const auto tok = open_model(args.model);
  for_each_jsonl(args.input, [&](const json& row) {
    const auto ids =
        required(row, "ids", &json::is_array, "a list of ids").get<std::vector<int32_t>>();
    std::cout << dump({{"text", tok->decode(ids, args.skip_special)}}) << '\n';
  });
}

// Jinja's truthiness, which is Python's.
bool truthy(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return false;
    case json::value_t::boolean:
      return v.get<bool>();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return v.get<double>() != 0.0;
    default:
      return !v.empty();  // strings, lists, mappings
  }
}

void run_chat_template(const TokenizerArgs& args) {
  const auto tok = open_model(args.model);
  const ChatTemplate tmpl = ChatTemplate::for_tokenizer(*tok);
  for_each_jsonl(args.input, [&](const json& row) {
    if (!row.is_object() || !row.contains("messages"))
      throw std::runtime_error("each line needs \"messages\"");
    const auto gen = row.find("add_generation_prompt");
    try {
      const std::string text = tmpl.render(row["messages"], gen != row.end() && truthy(*gen));
      std::cout << dump({{"text", text}}) << '\n';
    } catch (const ChatTemplateError& e) {
      std::cout << dump({{"error", e.what()}}) << '\n';
    }
  });
}

void add_model_option(CLI::App* sub, TokenizerArgs& args) {
  sub->add_option("--model", args.model,
                  "HF model directory, tokenizer.json or .gguf (default: $GEMMAX_MODEL, else the "
                  "Gemma 3 270M GGUF)");
}

}  // namespace

void register_tokenizer_commands(CLI::App& app) {
  // The option values must outlive parsing; the app owns them through the callbacks.
  auto args = std::make_shared<TokenizerArgs>();

  CLI::App* tokenize = app.add_subcommand("tokenize", "Text to token ids (JSON Lines)");
  add_model_option(tokenize, *args);
  tokenize->add_flag("--no-bos", args->no_bos, "Do not prepend <bos>");
  tokenize->add_option("--input", args->input,
                       "JSONL file of {\"text\": ...}; without it the text is read from stdin");
  tokenize->callback([args] { run_tokenize(*args); });

  CLI::App* detokenize = app.add_subcommand("detokenize", "Token ids to text (JSON Lines)");
  add_model_option(detokenize, *args);
  detokenize->add_flag("--skip-special", args->skip_special, "Drop special tokens");
  detokenize->add_option("--input", args->input, "JSONL file of {\"ids\": [...]} (default: stdin)");
  detokenize->callback([args] { run_detokenize(*args); });

  CLI::App* chat =
      app.add_subcommand("chat-template", "Render conversations with the chat template");
  add_model_option(chat, *args);
  chat->add_option("--input", args->input,
                   "JSONL file of {\"messages\": [...], \"add_generation_prompt\": bool}")
      ->required();
  chat->callback([args] { run_chat_template(*args); });
}

}  // namespace gemmax::cli
