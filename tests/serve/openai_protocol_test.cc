// Request parsing and error mapping of the OpenAI layer, on a hand-made 17-token tokenizer and a
// config with a 32-token context (no model needed).
#include "serve/openai_protocol.h"

#include <gtest/gtest.h>

namespace gemmax::serve {
namespace {

Tokenizer tiny_tokenizer() {
  TokenizerSpec spec;
  spec.source = "test";
  spec.tokens = {"<pad>",
                 "<eos>",
                 "<bos>",
                 "a",
                 "b",
                 "\xE2\x96\x81",
                 "u",
                 "s",
                 "e",
                 "r",
                 "m",
                 "o",
                 "d",
                 "l",
                 "\n",
                 "<start_of_turn>",
                 "<end_of_turn>"};
  spec.added.assign(spec.tokens.size(), 0);
  for (size_t id : {0, 1, 2, 15, 16}) spec.added[id] = 1;
  spec.special = spec.added;
  spec.model_vocab_size = 15;
  spec.bos_id = 2;
  spec.eos_id = 1;
  spec.pad_id = 0;
  spec.stop_ids = {1, 16};
  return Tokenizer(std::move(spec));
}

class ProtocolTest : public ::testing::Test {
 protected:
  ProtocolTest() : tok_(tiny_tokenizer()) {
    config_.vocab_size = 17;
    config_.max_position_embeddings = 32;
    info_ = {"m", &tok_, &config_};
  }
  ParsedRequest parse(Endpoint ep, const std::string& body) {
    return parse_generation_request(ep, body, info_);
  }
  // The status and param of the ApiError `body` raises (0 if none).
  std::pair<int, std::string> error_of(Endpoint ep, const std::string& body) {
    try {
      parse(ep, body);
    } catch (const ApiError& e) {
      const nlohmann::json j = e.body();
      EXPECT_TRUE(j["error"].contains("message") && j["error"].contains("type") &&
                  j["error"].contains("code"));
      return {e.status, e.param};
    }
    return {0, ""};
  }
  Tokenizer tok_;
  Gemma3Config config_;
  ModelInfo info_;
};

TEST_F(ProtocolTest, CompletionFieldsMapToSamplingParams) {
  const ParsedRequest r = parse(Endpoint::kCompletion, R"({"model":"m","prompt":"ab","max_tokens":5,
    "temperature":0.5,"top_p":0.9,"top_k":-1,"min_p":0.1,"seed":9,"stop":"b","n":2,"logprobs":3,"echo":true,
    "presence_penalty":0.5,"frequency_penalty":-0.5,"repetition_penalty":1.2,"logit_bias":{"3":-100}})");
  EXPECT_EQ(r.prompt, (std::vector<int32_t>{2, 3, 4}));  // <bos> a b
  EXPECT_EQ(r.params.max_tokens, 5);
  EXPECT_DOUBLE_EQ(r.params.temperature, 0.5);
  EXPECT_EQ(r.params.top_k, 0);
  EXPECT_EQ(r.params.seed, 9u);
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"b"});
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.params.logprobs, 3);
  EXPECT_EQ(r.params.prompt_logprobs, 3);  // echo + logprobs
  EXPECT_DOUBLE_EQ(r.params.logit_bias.at(3), -100);
  EXPECT_EQ(parse(Endpoint::kCompletion, R"({"model":"m","prompt":[3,4]})").prompt,
            (std::vector<int32_t>{3, 4}));
  EXPECT_EQ(parse(Endpoint::kCompletion, R"({"model":"m","prompt":"a"})").params.max_tokens, 16);
}

TEST_F(ProtocolTest, ChatAppliesTheTemplateAndDefaultsToTheRestOfTheContext) {
  const ParsedRequest r =
      parse(Endpoint::kChat, R"({"model":"m","messages":[{"role":"user","content":"a"}],
    "logprobs":true,"top_logprobs":2})");
  EXPECT_EQ(r.prompt_text, "<bos><start_of_turn>user\na<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(r.prompt.front(), 2);
  EXPECT_EQ(std::count(r.prompt.begin(), r.prompt.end(), 2), 1);  // no second <bos>
  EXPECT_EQ(r.params.logprobs, 2);
  EXPECT_EQ(r.params.max_tokens, 32 - static_cast<int>(r.prompt.size()));
  // Content given as text parts is the same conversation.
  EXPECT_EQ(
      parse(Endpoint::kChat,
            R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]})")
          .prompt,
      r.prompt);
}

TEST_F(ProtocolTest, ErrorsCarryStatusAndParam) {
  using P = std::pair<int, std::string>;
  EXPECT_EQ(error_of(Endpoint::kCompletion, "{nope"), P(400, ""));
  EXPECT_EQ(error_of(Endpoint::kCompletion, "[1]"), P(400, ""));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"prompt":"a"})"), P(400, "model"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"x","prompt":"a"})"), P(404, "model"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m"})"), P(400, "prompt"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","temperature":"hot"})"),
            P(400, "temperature"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","max_tokens":1.5})"),
            P(400, "max_tokens"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":[3,99]})"), P(400, "prompt"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","stop":[1]})"),
            P(400, "stop"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","logit_bias":{"x":1}})"),
            P(400, "logit_bias"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","temperature":-1})"),
            P(422, "temperature"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","top_p":0})"),
            P(422, "top_p"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","n":0})"), P(422, "n"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","logprobs":21})"),
            P(422, "logprobs"));
  EXPECT_EQ(error_of(Endpoint::kCompletion, R"({"model":"m","prompt":"a","logit_bias":{"17":1}})"),
            P(422, "logit_bias"));
  EXPECT_EQ(error_of(Endpoint::kCompletion,
                     R"({"model":"m","prompt":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})")
                .first,
            413);
  EXPECT_EQ(error_of(Endpoint::kChat, R"({"model":"m","messages":"a"})"), P(400, "messages"));
  EXPECT_EQ(error_of(Endpoint::kChat, R"({"model":"m","messages":[{"content":"a"}]})"),
            P(400, "messages"));
  // The template's own rule (roles alternate) is a 400 too.
  EXPECT_EQ(
      error_of(
          Endpoint::kChat,
          R"({"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]})"),
      P(400, "messages"));
}

TEST(Protocol, EngineRefusalsMapToStatuses) {
  EXPECT_EQ(api_error_from_engine(std::invalid_argument("prompt: too long")).status, 413);
  const ApiError e = api_error_from_engine(std::invalid_argument("top_k: must not be negative"));
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.param, "top_k");
}

TEST(Protocol, FinishReasonsAndUsage) {
  EXPECT_STREQ(openai_finish_reason(FinishReason::kStop), "stop");
  EXPECT_STREQ(openai_finish_reason(FinishReason::kLength), "length");
  EXPECT_EQ(usage_json(3, 4)["total_tokens"], 7);
}

}  // namespace
}  // namespace gemmax::serve
