// Gemma3Config: every field of MAX's Gemma3Config, read from a HuggingFace config.json (flat
// Gemma3ForCausalLM or the text_config of Gemma3ForConditionalGeneration, transformers 4.x or 5.x)
// or from GGUF `gemma3.*` metadata, so the same model gets the same config whichever format it
// comes in.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace gemmax {

class GgufReader;

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ReturnLogits { kLastToken, kAll, kVariable };

struct LinearScalingParams {
  double factor = 1.0;
};

struct Gemma3Config {
  int64_t vocab_size = 262208;
  int64_t hidden_size = 2304;
  int64_t intermediate_size = 9216;
  int num_hidden_layers = 26;
  int num_attention_heads = 8;
  int num_key_value_heads = 4;
  int head_dim = 256;
  std::string hidden_activation = "gelu_pytorch_tanh";
  int64_t max_position_embeddings = 131072;
  double rms_norm_eps = 1e-6;
  double rope_theta = 1'000'000.0;
  bool attention_bias = false;
  double query_pre_attn_scalar = 256;
  int sliding_window = 4096;
  std::optional<double> final_logit_softcapping;
  std::optional<double> attn_logit_softcapping;
  std::optional<LinearScalingParams> rope_scaling;  // applies to global (full attention) layers
  double rope_local_base_freq = 10'000.0;
  int sliding_window_pattern = 6;
  std::vector<bool> layer_is_sliding;  // the resolved `layer_types`, one per layer
  DType dtype = DType::kBF16;          // of the checkpoint's weights (the embedding's format)
  // The format sqrt(hidden_size) is rounded to before scaling embeddings: transformers casts it to
  // the weight dtype; llama.cpp (and so every GGUF checkpoint's reference) keeps f32.
  DType embed_scale_dtype = DType::kBF16;
  bool interleaved_rope_weights = false;
  bool tie_word_embeddings = true;
  std::optional<std::string> quant_config;  // e.g. "gguf:Q4_K_M"; none for float checkpoints
  ReturnLogits return_logits = ReturnLogits::kLastToken;
  int64_t bos_token_id = 2;
  std::vector<int64_t> eos_token_ids{1, 106};
  std::string source;  // file the config came from, for error messages

  // Throws ConfigError naming the first missing or contradictory field.
  void validate() const;
  // sqrt(hidden_size) rounded to embed_scale_dtype.
  float embed_scale() const;
  nlohmann::json to_json() const;
};

// From the parsed config.json of a HF checkpoint; `source` names the file for error messages.
Gemma3Config config_from_hf_json(const nlohmann::json& j, const std::string& source);
Gemma3Config config_from_hf_file(const std::string& path);
// From GGUF metadata (architecture must be gemma3).
Gemma3Config config_from_gguf(const GgufReader& gguf);

}  // namespace gemmax
