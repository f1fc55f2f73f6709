#include "tokenizer/chat_template.h"

#include <array>
#include <charconv>
#include <cstdio>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace gemmax {

namespace {

using nlohmann::json;

constexpr const char* kAlternate =
    "Conversation roles must alternate user/assistant/user/assistant/...";
constexpr const char* kInvalidContent = "Invalid content type";

// Statements only Gemma 3's template has; all must be present.
constexpr std::array<std::string_view, 7> kGemma3Markers = {
    "first_user_prefix",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "Conversation roles must alternate user/assistant/user/assistant/...",
    "Invalid content type",
    "\"model\""};

// m[key] as Jinja sees it: nullptr plays Undefined (missing key, or `m` not a mapping).
const json* field(const json& m, const char* key) {
  if (!m.is_object()) return nullptr;
  const auto it = m.find(key);
  return it == m.end() ? nullptr : &*it;
}

std::string python_type(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "NoneType";
    case json::value_t::boolean:
      return "bool";
    case json::value_t::number_float:
      return "float";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "int";
    case json::value_t::array:
      return "list";
    case json::value_t::object:
      return "dict";
    default:
      return "str";
  }
}

[[noreturn]] void jinja_error(const std::string& message) {
  throw ChatTemplateError(message, false);
}

std::string python_float(double v) {
  if (v != v) return "nan";
  if (v == 1.0 / 0.0) return "inf";
  if (v == -1.0 / 0.0) return "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // [-]d[.ddd]e±XX, shortest round-trip digits
  std::string sign;
  if (sci[0] == '-') sign = "-", sci.erase(0, 1);
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e + 1));
  if (exp >= -4 && exp < 16) {  // repr's fixed-point range
    std::string out;
    if (exp < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exp) + 1) + "." +
            digits.substr(static_cast<size_t>(exp) + 1);
    }
    return sign + out;
  }
  std::string mantissa = digits.substr(0, 1);
  if (digits.size() > 1) mantissa += "." + digits.substr(1);
  char ebuf[16];
  std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  return sign + mantissa + ebuf;
}

// An approximation of str.isprintable() beyond ASCII: controls, whitespace other than ' ', format
// characters in common use, private use and non-characters are escaped.
bool python_printable(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return false;
  if (cp != ' ' && utf8::is_python_space(cp)) return false;
  if ((cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
      (cp >= 0x2060 && cp <= 0x2064) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB))
    return false;
  if ((cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000) return false;
  return (cp & 0xFFFE) != 0xFFFE;
}

std::string python_repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  uint32_t cp = 0;
  for (size_t pos = 0; pos < s.size();) {
    size_t len = utf8::decode(s, pos, cp);
    if (len == 0) cp = static_cast<unsigned char>(s[pos]), len = 1;
    char buf[16];
    if (cp == '\\' || cp == static_cast<uint32_t>(quote)) {
      out += '\\', out += static_cast<char>(cp);
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (!python_printable(cp)) {
      std::snprintf(buf, sizeof buf,
                    cp < 0x100     ? "\\x%02x"
                    : cp < 0x10000 ? "\\u%04x"
                                   : "\\U%08x",
                    cp);
      out += buf;
    } else {
      out.append(s, pos, len);
    }
    pos += len;
  }
  return out + quote;
}

std::string python_repr(const json& v) {
  return v.is_string() ? python_repr_string(v.get_ref<const std::string&>()) : python_str(v);
}

// The first turn's prefix from a leading system message: its content (untrimmed) + "\n\n".
std::string system_prefix(const json& system) {
  const json* content = field(system, "content");
  if (content != nullptr && content->is_string()) return content->get<std::string>() + "\n\n";
  // messages[0]['content'][0]['text'] + '\n\n'
  const json* first =
      content != nullptr && content->is_array() && !content->empty() ? &(*content)[0] : nullptr;
  const json* text = first != nullptr ? field(*first, "text") : nullptr;
  if (text == nullptr) jinja_error("UndefinedError: system message has no content[0]['text']");
  if (!text->is_string())
    jinja_error("TypeError: unsupported operand type(s) for +: '" + python_type(*text) +
                "' and 'str'");
  return text->get<std::string>() + "\n\n";
}

void render_content(const json* content, std::string& out) {
  if (content == nullptr) return;  // Undefined: iterable, and empty
  if (content->is_string()) {
    out += utf8::python_strip(content->get_ref<const std::string&>());
    return;
  }
  if (content->is_object()) return;  // iterates over its keys, which have no 'type'
  if (!content->is_array()) throw ChatTemplateError(kInvalidContent, true);
  for (const json& item : *content) {
    const json* type = field(item, "type");
    if (type == nullptr || !type->is_string()) continue;
    if (*type == "image") {
      out += "<start_of_image>";
    } else if (*type == "text") {
      const json* text = field(item, "text");
      if (text != nullptr) out += utf8::python_strip(python_str(*text));
    }
  }
}

}  // namespace

bool is_gemma3_chat_template(std::string_view source) {
  for (const std::string_view marker : kGemma3Markers) {
    if (source.find(marker) == std::string_view::npos) return false;
  }
  return true;
}

ChatTemplate::ChatTemplate(std::string_view source, std::string bos_token)
    : bos_token_(std::move(bos_token)) {
  if (!source.empty() && !is_gemma3_chat_template(source))
    throw std::invalid_argument(
        "chat template is not Gemma 3's; only the Gemma 3 template is supported");
}

ChatTemplate ChatTemplate::for_tokenizer(const Tokenizer& tokenizer) {
  const std::string bos =
      tokenizer.bos_id() >= 0 ? std::string(tokenizer.token_text(tokenizer.bos_id())) : "";
  try {
    return ChatTemplate(tokenizer.chat_template_source(), bos);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(tokenizer.source() + ": " + e.what());
  }
}

std::string ChatTemplate::render(const json& messages, bool add_generation_prompt) const {
  if (!messages.is_array()) jinja_error("TypeError: messages is not a list");
  if (messages.empty()) jinja_error("UndefinedError: list object has no element 0");
  std::string out = bos_token_;
  std::string prefix;
  size_t start = 0;
  const json* first_role = field(messages[0], "role");
  if (first_role != nullptr && *first_role == "system") {
    prefix = system_prefix(messages[0]);
    start = 1;
  }
  for (size_t i = start; i < messages.size(); ++i) {
    const size_t index = i - start;
    const json* role = field(messages[i], "role");
    const bool is_user = role != nullptr && *role == "user";
    if (is_user != (index % 2 == 0)) throw ChatTemplateError(kAlternate, true);
    if (role == nullptr) jinja_error("UndefinedError: message has no 'role'");
    if (!role->is_string())
      jinja_error("TypeError: can only concatenate str (not \"" + python_type(*role) +
                  "\") to str");
    const std::string& name = role->get_ref<const std::string&>();
    out += "<start_of_turn>";
    out += name == "assistant" ? "model" : name;
    out += '\n';
    if (index == 0) out += prefix;
    render_content(field(messages[i], "content"), out);
    out += "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  json list = json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return render(list, add_generation_prompt);
}

std::string python_str(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return v.get<std::string>();
    case json::value_t::null:
      return "None";
    case json::value_t::boolean:
      return v.get<bool>() ? "True" : "False";
    case json::value_t::number_integer:
      return std::to_string(v.get<int64_t>());
    case json::value_t::number_unsigned:
      return std::to_string(v.get<uint64_t>());
    case json::value_t::number_float:
      return python_float(v.get<double>());
    case json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + python_repr(v[i]);
      return out + "]";
    }
    case json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, item] : v.items()) {
        out += (first ? "" : ", ") + python_repr_string(k) + ": " + python_repr(item);
        first = false;
      }
      return out + "}";
    }
    default:
      return "";
  }
}

}  // namespace gemmax
