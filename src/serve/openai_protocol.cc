#include "serve/openai_protocol.h"

#include <fmt/core.h>

#include "tokenizer/chat_template.h"

namespace gemmax::serve {

using nlohmann::json;

json ApiError::body() const {
  return {{"error",
           {{"message", what()},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

namespace {

ApiError bad_type(const std::string& field, const char* expected) {
  return ApiError(400, fmt::format("'{}' must be {}", field, expected), "invalid_request_error",
                  field);
}

// Optional typed members: absent or null leaves `out` alone, a wrong type is a 400 naming the
// field.
void read_number(const json& j, const char* field, double& out) {
  if (!j.contains(field) || j[field].is_null()) return;
  if (!j[field].is_number()) throw bad_type(field, "a number");
  out = j[field].get<double>();
}

void read_int(const json& j, const char* field, int& out) {
  if (!j.contains(field) || j[field].is_null()) return;
  const json& v = j[field];
  if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
    throw bad_type(field, "an integer");
  out = v.get<int>();
}

void read_bool(const json& j, const char* field, bool& out) {
  if (!j.contains(field) || j[field].is_null()) return;
  if (!j[field].is_boolean()) throw bad_type(field, "a boolean");
  out = j[field].get<bool>();
}

void read_stop(const json& j, SamplingParams& p) {
  if (!j.contains("stop") || j["stop"].is_null()) return;
  const json& v = j["stop"];
  if (v.is_string()) {
    p.stop = {v.get<std::string>()};
    return;
  }
  if (!v.is_array()) throw bad_type("stop", "a string or an array of strings");
  for (const json& s : v) {
    if (!s.is_string()) throw bad_type("stop", "a string or an array of strings");
    p.stop.push_back(s.get<std::string>());
  }
  if (p.stop.size() > 16)
    throw ApiError(422, "at most 16 stop strings", "invalid_request_error", "stop");
}

void read_logit_bias(const json& j, SamplingParams& p) {
  if (!j.contains("logit_bias") || j["logit_bias"].is_null()) return;
  const json& v = j["logit_bias"];
  if (!v.is_object()) throw bad_type("logit_bias", "an object mapping token ids to numbers");
  for (const auto& [key, bias] : v.items()) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != key.size() || id < 0 || id > INT32_MAX || !bias.is_number())
      throw bad_type("logit_bias", "an object mapping token ids to numbers");
    p.logit_bias[static_cast<int32_t>(id)] = bias.get<double>();
  }
}

void read_sampling(const json& j, Endpoint ep, ParsedRequest& r) {
  SamplingParams& p = r.params;
  read_number(j, "temperature", p.temperature);
  read_number(j, "top_p", p.top_p);
  int top_k = 0;
  read_int(j, "top_k", top_k);
  p.top_k = top_k == -1 ? 0 : top_k;  // vLLM spells "disabled" -1
  read_number(j, "min_p", p.min_p);
  read_number(j, "repetition_penalty", p.repetition_penalty);
  read_number(j, "presence_penalty", p.presence_penalty);
  read_number(j, "frequency_penalty", p.frequency_penalty);
  read_logit_bias(j, p);
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) throw bad_type("seed", "an integer");
    p.seed = static_cast<uint64_t>(j["seed"].get<int64_t>());
  }
  read_stop(j, p);
  read_bool(j, "ignore_eos", p.ignore_eos);
  read_int(j, "n", r.n);
  if (r.n < 1 || r.n > 16)
    throw ApiError(422, "'n' must be in [1, 16]", "invalid_request_error", "n");
  read_bool(j, "stream", r.stream);
  if (j.contains("stream_options") && j["stream_options"].is_object())
    read_bool(j["stream_options"], "include_usage", r.include_usage);
  if (ep == Endpoint::kChat) {
    bool logprobs = false;
    read_bool(j, "logprobs", logprobs);
    int top = 0;
    read_int(j, "top_logprobs", top);
    if (top < 0 || top > SamplingParams::kMaxLogprobs)
      throw ApiError(422, "'top_logprobs' must be in [0, 20]", "invalid_request_error",
                     "top_logprobs");
    if (logprobs) p.logprobs = top;
  } else {
    read_int(j, "logprobs", p.logprobs);
    if (j.contains("logprobs") && !j["logprobs"].is_null() && (p.logprobs < 0 || p.logprobs > 20))
      throw ApiError(422, "'logprobs' must be in [0, 20]", "invalid_request_error", "logprobs");
    read_bool(j, "echo", r.echo);
    if (r.echo && p.logprobs >= 0) p.prompt_logprobs = p.logprobs;
  }
}

// Chat content may be a string or a list of {"type":"text","text":...} parts.
json normalise_messages(const json& messages) {
  if (!messages.is_array() || messages.empty()) throw bad_type("messages", "a non-empty array");
  json out = json::array();
  for (const json& m : messages) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw bad_type("messages", "an array of objects with a string 'role'");
    json content = m.value("content", json(""));
    if (content.is_null()) content = "";
    if (content.is_array()) {
      std::string text;
      for (const json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
          throw ApiError(400, "only text content parts are supported", "invalid_request_error",
                         "messages");
        text += part["text"].get<std::string>();
      }
      content = text;
    }
    if (!content.is_string())
      throw bad_type("messages", "messages whose content is a string or text parts");
    out.push_back({{"role", m["role"]}, {"content", content}});
  }
  return out;
}

void read_prompt(const json& j, const ModelInfo& model, ParsedRequest& r) {
  const Tokenizer& tok = *model.tokenizer;
  if (r.endpoint == Endpoint::kChat) {
    if (!j.contains("messages"))
      throw ApiError(400, "'messages' is required", "invalid_request_error", "messages");
    try {
      r.prompt_text =
          ChatTemplate::for_tokenizer(tok).render(normalise_messages(j["messages"]), true);
    } catch (const ChatTemplateError& e) {
      throw ApiError(400, e.what(), "invalid_request_error", "messages");
    }
    // The rendered text starts with the <bos> text already.
    r.prompt = tok.encode(r.prompt_text, EncodeOptions{.add_bos = false});
    return;
  }
  if (!j.contains("prompt"))
    throw ApiError(400, "'prompt' is required", "invalid_request_error", "prompt");
  json p = j["prompt"];
  if (p.is_array() && p.size() == 1 && p[0].is_string()) p = p[0];
  if (p.is_string()) {
    r.prompt_text = p.get<std::string>();
    r.prompt = tok.encode(r.prompt_text);
    return;
  }
  if (!p.is_array()) throw bad_type("prompt", "a string or an array of token ids");
  for (const json& id : p) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() >= static_cast<int64_t>(tok.vocab_size()))
      throw bad_type("prompt", "a string or an array of token ids within the vocabulary");
    r.prompt.push_back(id.get<int32_t>());
  }
  r.prompt_text = tok.decode(r.prompt);
}

}  // namespace

ParsedRequest parse_generation_request(Endpoint endpoint, const std::string& body,
                                       const ModelInfo& model) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("malformed JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  if (!j.contains("model") || !j["model"].is_string()) throw bad_type("model", "a string");
  if (j["model"] != model.name)
    throw ApiError(404,
                   fmt::format("the model '{}' does not exist; this server serves '{}'",
                               j["model"].get<std::string>(), model.name),
                   "invalid_request_error", "model", "model_not_found");
  ParsedRequest r;
  r.endpoint = endpoint;
  read_sampling(j, endpoint, r);
  read_prompt(j, model, r);
  const int64_t ctx = model.config->max_position_embeddings;
  const auto n = static_cast<int64_t>(r.prompt.size());
  if (n == 0) throw ApiError(400, "the prompt is empty", "invalid_request_error", "prompt");
  if (n >= ctx)
    throw ApiError(
        413, fmt::format("the prompt has {} tokens; this model's context length is {}", n, ctx),
        "invalid_request_error", endpoint == Endpoint::kChat ? "messages" : "prompt",
        "context_length_exceeded");
  // Default length: 16 for completions (as OpenAI), the rest of the context for chat.
  int max_tokens = endpoint == Endpoint::kChat ? static_cast<int>(ctx - n) : 16;
  read_int(j, "max_tokens", max_tokens);
  read_int(j, "max_completion_tokens", max_tokens);
  r.params.max_tokens = max_tokens;
  try {
    r.params.validate(model.config->vocab_size);
  } catch (const std::invalid_argument& e) {
    throw api_error_from_engine(e);
  }
  return r;
}

ApiError api_error_from_engine(const std::invalid_argument& e) {
  const std::string msg = e.what();
  const size_t colon = msg.find(':');
  const std::string field = colon == std::string::npos ? "" : msg.substr(0, colon);
  if (field == "prompt")
    return ApiError(413, msg, "invalid_request_error", "prompt", "context_length_exceeded");
  return ApiError(422, msg, "invalid_request_error", field);
}

const char* openai_finish_reason(FinishReason r) {
  // Same names as the pipeline's, except that OpenAI-compatible servers (vLLM) call a cancelled
  // request "abort".
  return r == FinishReason::kCancelled ? "abort" : finish_reason_name(r);
}

namespace {

std::string token_string(const Tokenizer& tok, int32_t id) {
  return tok.decode(std::span<const int32_t>(&id, 1));
}

json token_bytes(const Tokenizer& tok, int32_t id) {
  json bytes = json::array();
  const int b = tok.byte_value(id);
  if (b >= 0) return json::array({b});
  for (unsigned char c : token_string(tok, id)) bytes.push_back(c);
  return bytes;
}

}  // namespace

json chat_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps) {
  json content = json::array();
  for (const TokenLogprob& lp : lps) {
    json top = json::array();
    for (const auto& [id, logprob] : lp.top)
      top.push_back({{"token", token_string(tok, id)},
                     {"logprob", logprob},
                     {"bytes", token_bytes(tok, id)}});
    content.push_back({{"token", token_string(tok, lp.id)},
                       {"logprob", lp.logprob},
                       {"bytes", token_bytes(tok, lp.id)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

json completion_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps,
                         const std::vector<TokenLogprob>& prompt_lps, int32_t first_prompt_token,
                         size_t text_offset) {
  json tokens = json::array(), token_lps = json::array(), tops = json::array(),
       offsets = json::array();
  auto add = [&](int32_t id, json lp, json top) {
    const std::string s = token_string(tok, id);
    tokens.push_back(s);
    token_lps.push_back(std::move(lp));
    tops.push_back(std::move(top));
    offsets.push_back(text_offset);
    text_offset += s.size();
  };
  auto top_of = [&](const TokenLogprob& lp) {
    json top = json::object();
    for (const auto& [id, logprob] : lp.top) top[token_string(tok, id)] = logprob;
    return top;
  };
  if (first_prompt_token >= 0) add(first_prompt_token, nullptr, nullptr);  // no logprob for token 0
  for (const TokenLogprob& lp : prompt_lps) add(lp.id, lp.logprob, top_of(lp));
  for (const TokenLogprob& lp : lps) add(lp.id, lp.logprob, top_of(lp));
  return {{"tokens", tokens},
          {"token_logprobs", token_lps},
          {"top_logprobs", tops},
          {"text_offset", offsets}};
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

}  // namespace gemmax::serve
