#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "golden_util.h"
#include "io/gguf_reader.h"
#include "model/gemma3_config.h"
#include "model/gemma3_weights.h"

namespace gemmax {
namespace {

using nlohmann::json;

json flat_config() {
  return json{{"architectures", {"Gemma3ForCausalLM"}},
              {"hidden_size", 640},
              {"intermediate_size", 2048},
              {"num_hidden_layers", 18},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 1},
              {"head_dim", 256},
              {"vocab_size", 262144},
              {"sliding_window", 512},
              {"query_pre_attn_scalar", 256},
              {"rope_theta", 1000000.0},
              {"torch_dtype", "bfloat16"}};
}

TEST(Gemma3Config, FlatConfigUsesPatternOfSix) {
  Gemma3Config c = config_from_hf_json(flat_config(), "config.json");
  EXPECT_EQ(c.hidden_size, 640);
  EXPECT_EQ(c.num_key_value_heads, 1);
  ASSERT_EQ(c.layer_is_sliding.size(), 18u);
  for (int i = 0; i < 18; ++i) EXPECT_EQ(c.layer_is_sliding[i], (i + 1) % 6 != 0) << i;
  EXPECT_EQ(c.dtype, DType::kBF16);
  // sqrt(640) = 25.2982... rounds to 25.25 in bf16, as transformers computes it for bf16 weights.
  EXPECT_EQ(c.embed_scale(), 25.25f);
}

TEST(Gemma3Config, MultimodalTextConfigTakesGemma3TextDefaults) {
  json j{{"architectures", {"Gemma3ForConditionalGeneration"}},
         {"text_config",
          {{"hidden_size", 2560},
           {"num_hidden_layers", 34},
           {"intermediate_size", 10240},
           {"rope_scaling", {{"rope_type", "linear"}, {"factor", 8.0}}}}}};
  Gemma3Config c = config_from_hf_json(j, "config.json");
  EXPECT_EQ(c.hidden_size, 2560);
  EXPECT_EQ(c.vocab_size, 262208);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_DOUBLE_EQ(c.rope_local_base_freq, 10000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 8.0);
}

TEST(Gemma3Config, Transformers5RopeParametersAndLayerTypes) {
  json j = flat_config();
  j["num_hidden_layers"] = 3;
  j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};
  j["rope_parameters"] = {
      {"full_attention", {{"rope_type", "linear"}, {"rope_theta", 500000.0}, {"factor", 4.0}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 20000.0}}}};
  Gemma3Config c = config_from_hf_json(j, "config.json");
  EXPECT_EQ(c.layer_is_sliding, (std::vector<bool>{true, false, true}));
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope_local_base_freq, 20000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 4.0);
}

// Each broken config must fail with a message naming the field.
TEST(Gemma3Config, ErrorsNameTheField) {
  struct Bad {
    std::function<void(json&)> edit;
    std::string mention;
  };
  const std::vector<Bad> bad = {
      {[](json& j) { j.erase("hidden_size"); }, "hidden_size"},
      {[](json& j) { j["num_key_value_heads"] = 3; }, "num_key_value_heads"},
      {[](json& j) { j["hidden_activation"] = "relu"; }, "hidden_activation"},
      {[](json& j) { j["head_dim"] = "wide"; }, "head_dim"},
      {[](json& j) { j["layer_types"] = {"full_attention"}; }, "layer_types"},
      {[](json& j) {
         j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2}};
       },
       "rope_type"},
      {[](json& j) { j["sliding_window"] = 0; }, "sliding_window"},
  };
  for (const Bad& b : bad) {
    json j = flat_config();
    b.edit(j);
    try {
      config_from_hf_json(j, "cfg.json");
      ADD_FAILURE() << "accepted a config that should mention " << b.mention;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(b.mention), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    }
  }
}

// The same tiny model as HF safetensors and as GGUF must give the same config.
TEST(Gemma3Config, SameModelSameConfigWhicheverFormat) {
  for (const char* variant : {"base", "softcap_ropescale", "multimodal_layout"}) {
    auto hf = Gemma3Checkpoint::open(testing::fixture(std::string("tiny/") + variant));
    auto gguf =
        Gemma3Checkpoint::open(testing::fixture(std::string("tiny/") + variant + "/model.gguf"));
    json a = hf->config().to_json(), b = gguf->config().to_json();
    // GGUF stores eps as f32: 1e-6 comes back as 9.99999997e-07.
    EXPECT_NEAR(a["rms_norm_eps"].get<double>(), b["rms_norm_eps"].get<double>(), 1e-12) << variant;
    for (const char* ignore :
         {"dtype", "embed_scale", "quant_config", "max_position_embeddings", "eos_token_ids",
          "attn_logit_softcapping", "sliding_window_pattern", "rms_norm_eps"}) {
      a.erase(ignore);
      b.erase(ignore);
    }
    EXPECT_EQ(a, b) << variant << "\nHF:   " << a.dump() << "\nGGUF: " << b.dump();
  }
}

TEST(Gemma3Checkpoint, MissingPathIsAClearError) {
  try {
    Gemma3Checkpoint::open("/nonexistent/model.gguf");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
}

}  // namespace
}  // namespace gemmax
