// Gemma 3's chat template, rendered natively: the output (and every error raise_exception gives) is
// byte-identical to what Python jinja2 produces from the Jinja `chat_template` in Gemma 3's
// tokenizer_config.json, as transformers runs it. Other templates are refused, not approximated.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gemmax {

class Tokenizer;

class ChatTemplateError : public std::runtime_error {
 public:
  // `from_template`: the template's own raise_exception(message) (message is exact); otherwise an
  // error the Jinja engine would raise (UndefinedError, TypeError), whose text is descriptive only.
  ChatTemplateError(const std::string& message, bool from_template)
      : std::runtime_error(message), from_template_(from_template) {}
  bool from_template() const { return from_template_; }

 private:
  bool from_template_;
};

struct ChatMessage {
  std::string role;
  std::string content;
};

// True when `source` is the Gemma 3 template (recognised by its distinctive statements).
bool is_gemma3_chat_template(std::string_view source);

class ChatTemplate {
 public:
  // Throws std::invalid_argument when `source` is non-empty and not the Gemma 3 template. An empty
  // source (model files that declare no template, like the 270M GGUF) means Gemma 3's.
  ChatTemplate(std::string_view source, std::string bos_token);

  // The model's template with its bos text; throws std::invalid_argument for a foreign template.
  static ChatTemplate for_tokenizer(const Tokenizer& tokenizer);

  // `messages` is the JSON list transformers receives. Throws ChatTemplateError.
  std::string render(const nlohmann::json& messages, bool add_generation_prompt) const;
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

 private:
  std::string bos_token_;
};

// Python's str() of a JSON value as json.loads would give it (None, True, 1.5, [1, 'a'], {...}):
// what Jinja's `trim` filter sees for a non-string value.
std::string python_str(const nlohmann::json& value);

}  // namespace gemmax
