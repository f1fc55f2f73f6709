// The OpenAI HTTP API as gemmax serves it: request bodies -> engine requests (with the OpenAI
// error shape and status for everything wrong with them), engine results -> response JSON.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/gemma3_config.h"
#include "pipeline/engine.h"
#include "tokenizer/tokenizer.h"

namespace gemmax::serve {

// An error answered as {"error":{"message","type","param","code"}} with HTTP `status`.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error",
           std::string param = "", std::string code = "")
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type, param, code;
  nlohmann::json body() const;
};

enum class Endpoint { kChat, kCompletion };

struct ParsedRequest {
  Endpoint endpoint = Endpoint::kCompletion;
  std::vector<int32_t> prompt;
  std::string prompt_text;  // the prompt as text (echo)
  SamplingParams params;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;           // completions: prepend the prompt (and its logprobs)
};

// Everything parsing needs to know about the served model.
struct ModelInfo {
  std::string name;
  const Tokenizer* tokenizer = nullptr;
  const Gemma3Config* config = nullptr;
};

// Throws ApiError: 400 malformed JSON / wrong types / missing fields, 404 unknown model,
// 413 a prompt that does not fit the context, 422 out-of-range sampling values.
ParsedRequest parse_generation_request(Endpoint endpoint, const std::string& body,
                                       const ModelInfo& model);

// Maps an engine submit() refusal ("field: message") to the matching ApiError.
ApiError api_error_from_engine(const std::invalid_argument& e);

// One choice's accumulated result.
struct ChoiceResult {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<TokenLogprob> logprobs, prompt_logprobs;
  FinishReason finish = FinishReason::kNone;
  std::string error;
  int64_t completion_tokens = 0;
};

// "stop" / "length" / "abort" (cancelled) / "error".
const char* openai_finish_reason(FinishReason r);

// The logprobs member of a choice: chat {"content":[...]}, completions the legacy
// {"tokens","token_logprobs","top_logprobs","text_offset"} (prompt entries first when echoing).
nlohmann::json chat_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps);
nlohmann::json completion_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps,
                                   const std::vector<TokenLogprob>& prompt_lps,
                                   int32_t first_prompt_token, size_t text_offset);

nlohmann::json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

}  // namespace gemmax::serve
