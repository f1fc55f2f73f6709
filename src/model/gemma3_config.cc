#include "model/gemma3_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/gguf_reader.h"
#include "tensor/half.h"

namespace gemmax {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw ConfigError(source + ": " + what);
}

// Reads an optional numeric field; a present field of the wrong type is an error naming it.
template <typename T>
void read_number(const json& j, const char* key, T& out, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (!it->is_number()) fail(source, std::string("field '") + key + "' must be a number");
  out = it->get<T>();
}

std::optional<double> read_optional_double(const json& j, const char* key,
                                           const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) fail(source, std::string("field '") + key + "' must be a number or null");
  return it->get<double>();
}

std::vector<bool> pattern_layers(int n_layers, int pattern) {
  std::vector<bool> sliding(n_layers);
  // transformers: layer i is full attention when (i + 1) % pattern == 0.
  for (int i = 0; i < n_layers; ++i) sliding[i] = pattern <= 0 ? false : ((i + 1) % pattern) != 0;
  return sliding;
}

// rope_scaling (transformers 4.x) or rope_parameters (5.x, per attention type).
void read_rope(const json& j, Gemma3Config& c, const std::string& source) {
  auto read_scaling = [&](const json& s, const char* field) {
    if (s.is_null()) return;
    if (!s.is_object()) fail(source, std::string("field '") + field + "' must be an object");
    const std::string type = s.value("rope_type", s.value("type", std::string("default")));
    if (type == "default") return;
    if (type != "linear")
      fail(source, std::string(field) + ": unsupported rope_type '" + type + "'");
    if (!s.contains("factor") || !s["factor"].is_number())
      fail(source, std::string(field) + ": linear scaling needs a numeric 'factor'");
    c.rope_scaling = LinearScalingParams{s["factor"].get<double>()};
  };
  if (auto it = j.find("rope_scaling"); it != j.end()) read_scaling(*it, "rope_scaling");
  auto params = j.find("rope_parameters");
  if (params == j.end() || params->is_null()) return;
  if (!params->is_object()) fail(source, "field 'rope_parameters' must be an object");
  if (params->contains("full_attention")) {
    const json& full = (*params)["full_attention"];
    read_number(full, "rope_theta", c.rope_theta, source);
    read_scaling(full, "rope_parameters.full_attention");
  }
  if (params->contains("sliding_attention")) {
    read_number((*params)["sliding_attention"], "rope_theta", c.rope_local_base_freq, source);
  }
  if (params->contains("rope_theta") && !params->contains("full_attention")) {
    read_number(*params, "rope_theta", c.rope_theta, source);
    read_scaling(*params, "rope_parameters");
  }
}

void read_layer_types(const json& j, Gemma3Config& c, const std::string& source) {
  auto it = j.find("layer_types");
  if (it == j.end() || it->is_null()) {
    c.layer_is_sliding = pattern_layers(c.num_hidden_layers, c.sliding_window_pattern);
    return;
  }
  if (!it->is_array()) fail(source, "field 'layer_types' must be a list");
  c.layer_is_sliding.clear();
  for (const json& t : *it) {
    const std::string s = t.is_string() ? t.get<std::string>() : "";
    if (s == "sliding_attention") {
      c.layer_is_sliding.push_back(true);
    } else if (s == "full_attention") {
      c.layer_is_sliding.push_back(false);
    } else {
      fail(source, "layer_types: unknown layer type " + t.dump());
    }
  }
}

DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::kF32;
  if (name == "float16") return DType::kF16;
  return DType::kBF16;
}

}  // namespace

void Gemma3Config::validate() const {
  auto bad = [&](const std::string& what) { fail(source, what); };
  if (vocab_size <= 0) bad("vocab_size must be positive");
  if (hidden_size <= 0) bad("hidden_size must be positive");
  if (intermediate_size <= 0) bad("intermediate_size must be positive");
  if (num_hidden_layers <= 0) bad("num_hidden_layers must be positive");
  if (num_attention_heads <= 0) bad("num_attention_heads must be positive");
  if (num_key_value_heads <= 0) bad("num_key_value_heads must be positive");
  if (num_attention_heads % num_key_value_heads != 0)
    bad("num_attention_heads (" + std::to_string(num_attention_heads) +
        ") is not a multiple of num_key_value_heads (" + std::to_string(num_key_value_heads) + ")");
  if (head_dim <= 0 || head_dim % 2 != 0) bad("head_dim must be a positive even number");
  if (hidden_activation != "gelu_pytorch_tanh" && hidden_activation != "gelu_tanh" &&
      hidden_activation != "gelu")
    bad("unknown hidden_activation '" + hidden_activation + "'");
  if (!(rms_norm_eps > 0)) bad("rms_norm_eps must be positive");
  if (!(rope_theta > 0) || !(rope_local_base_freq > 0)) bad("rope_theta must be positive");
  if (!(query_pre_attn_scalar > 0)) bad("query_pre_attn_scalar must be positive");
  if (sliding_window <= 0) bad("sliding_window must be positive");
  if (static_cast<int>(layer_is_sliding.size()) != num_hidden_layers)
    bad("layer_types has " + std::to_string(layer_is_sliding.size()) + " entries for " +
        std::to_string(num_hidden_layers) + " layers");
  if (rope_scaling && !(rope_scaling->factor > 0)) bad("rope_scaling.factor must be positive");
  if (final_logit_softcapping && !(*final_logit_softcapping > 0))
    bad("final_logit_softcapping must be positive");
  if (attn_logit_softcapping && !(*attn_logit_softcapping > 0))
    bad("attn_logit_softcapping must be positive");
  if (attention_bias) bad("attention_bias=true is not supported (no Gemma 3 checkpoint uses it)");
  if (max_position_embeddings <= 0) bad("max_position_embeddings must be positive");
}

float Gemma3Config::embed_scale() const {
  const float s = std::sqrt(static_cast<float>(hidden_size));
  if (embed_scale_dtype == DType::kBF16) return bf16_to_f32(f32_to_bf16(s));
  if (embed_scale_dtype == DType::kF16) return f16_to_f32(f32_to_f16(s));
  return s;
}

nlohmann::json Gemma3Config::to_json() const {
  json j;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["hidden_activation"] = hidden_activation;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["attention_bias"] = attention_bias;
  j["query_pre_attn_scalar"] = query_pre_attn_scalar;
  j["sliding_window"] = sliding_window;
  j["final_logit_softcapping"] = final_logit_softcapping ? json(*final_logit_softcapping) : json();
  j["attn_logit_softcapping"] = attn_logit_softcapping ? json(*attn_logit_softcapping) : json();
  j["rope_scaling"] =
      rope_scaling ? json{{"rope_type", "linear"}, {"factor", rope_scaling->factor}} : json();
  j["rope_local_base_freq"] = rope_local_base_freq;
  j["sliding_window_pattern"] = sliding_window_pattern;
  json types = json::array();
  for (bool s : layer_is_sliding) types.push_back(s ? "sliding_attention" : "full_attention");
  j["layer_types"] = types;
  j["dtype"] = std::string(dtype_name(dtype));
  j["interleaved_rope_weights"] = interleaved_rope_weights;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["quant_config"] = quant_config ? json(*quant_config) : json();
  j["bos_token_id"] = bos_token_id;
  j["eos_token_ids"] = eos_token_ids;
  j["embed_scale"] = embed_scale();
  return j;
}

Gemma3Config config_from_hf_json(const json& root, const std::string& source) {
  if (!root.is_object()) fail(source, "config must be a JSON object");
  // Gemma3ForConditionalGeneration keeps the text model's fields under text_config; omitted ones
  // take Gemma3TextConfig's defaults, which are this struct's initial values.
  const bool nested = root.contains("text_config") && root["text_config"].is_object();
  const json& j = nested ? root["text_config"] : root;
  Gemma3Config c;
  c.source = source;
  if (!nested) {
    for (const char* required : {"hidden_size", "num_hidden_layers", "vocab_size"})
      if (!j.contains(required)) fail(source, std::string("missing field '") + required + "'");
  }
  read_number(j, "vocab_size", c.vocab_size, source);
  read_number(j, "hidden_size", c.hidden_size, source);
  read_number(j, "intermediate_size", c.intermediate_size, source);
  read_number(j, "num_hidden_layers", c.num_hidden_layers, source);
  read_number(j, "num_attention_heads", c.num_attention_heads, source);
  read_number(j, "num_key_value_heads", c.num_key_value_heads, source);
  read_number(j, "head_dim", c.head_dim, source);
  read_number(j, "max_position_embeddings", c.max_position_embeddings, source);
  read_number(j, "rms_norm_eps", c.rms_norm_eps, source);
  read_number(j, "rope_theta", c.rope_theta, source);
  read_number(j, "query_pre_attn_scalar", c.query_pre_attn_scalar, source);
  read_number(j, "sliding_window", c.sliding_window, source);
  read_number(j, "rope_local_base_freq", c.rope_local_base_freq, source);
  read_number(j, "sliding_window_pattern", c.sliding_window_pattern, source);
  c.final_logit_softcapping = read_optional_double(j, "final_logit_softcapping", source);
  c.attn_logit_softcapping = read_optional_double(j, "attn_logit_softcapping", source);
  if (auto it = j.find("hidden_activation"); it != j.end() && it->is_string())
    c.hidden_activation = it->get<std::string>();
  if (auto it = j.find("attention_bias"); it != j.end() && it->is_boolean())
    c.attention_bias = it->get<bool>();
  if (auto it = root.find("tie_word_embeddings"); it != root.end() && it->is_boolean())
    c.tie_word_embeddings = it->get<bool>();
  for (const char* key : {"dtype", "torch_dtype"}) {
    if (auto it = j.find(key); it != j.end() && it->is_string()) {
      c.dtype = dtype_from_name(*it);
      c.embed_scale_dtype = c.dtype;
    }
  }
  const json& eos_holder = j.contains("eos_token_id") ? j : root;
  if (auto it = eos_holder.find("eos_token_id"); it != eos_holder.end()) {
    if (it->is_number_integer()) c.eos_token_ids = {it->get<int64_t>()};
    if (it->is_array()) c.eos_token_ids = it->get<std::vector<int64_t>>();
  }
  read_number(j, "bos_token_id", c.bos_token_id, source);
  read_rope(j, c, source);
  read_layer_types(j, c, source);
  c.validate();
  return c;
}

Gemma3Config config_from_hf_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open");
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ConfigError(path + ": not valid JSON");
  return config_from_hf_json(j, path);
}

Gemma3Config config_from_gguf(const GgufReader& g) {
  const std::string arch = g.find_string("general.architecture").value_or("");
  if (arch != "gemma3") fail(g.path(), "general.architecture is '" + arch + "', expected 'gemma3'");
  auto key = [](const char* k) { return std::string("gemma3.") + k; };
  auto need_int = [&](const char* k) {
    auto v = g.find_int(key(k));
    if (!v) fail(g.path(), "missing metadata key '" + key(k) + "'");
    return *v;
  };
  Gemma3Config c;
  c.source = g.path();
  c.hidden_size = need_int("embedding_length");
  c.num_hidden_layers = static_cast<int>(need_int("block_count"));
  c.intermediate_size = need_int("feed_forward_length");
  c.num_attention_heads = static_cast<int>(need_int("attention.head_count"));
  c.num_key_value_heads =
      static_cast<int>(g.find_int(key("attention.head_count_kv")).value_or(c.num_attention_heads));
  c.head_dim = static_cast<int>(
      g.find_int(key("attention.key_length")).value_or(c.hidden_size / c.num_attention_heads));
  if (auto v = g.find_int(key("attention.value_length")); v && *v != c.head_dim)
    fail(g.path(), "attention.value_length differs from attention.key_length");
  c.max_position_embeddings = g.find_int(key("context_length")).value_or(c.max_position_embeddings);
  c.rms_norm_eps = g.find_float(key("attention.layer_norm_rms_epsilon")).value_or(c.rms_norm_eps);
  c.rope_theta = g.find_float(key("rope.freq_base")).value_or(c.rope_theta);
  // llama.cpp hard-codes these for Gemma 3; our converter records them under extension keys.
  c.rope_local_base_freq = g.find_float(key("rope.freq_base_swa")).value_or(10'000.0);
  c.query_pre_attn_scalar = g.find_float(key("attention.query_pre_attn_scalar"))
                                .value_or(static_cast<double>(c.head_dim));
  c.sliding_window = static_cast<int>(g.find_int(key("attention.sliding_window")).value_or(4096));
  if (auto v = g.find_float(key("attn_logit_softcapping")); v && *v > 0)
    c.attn_logit_softcapping = v;
  if (auto v = g.find_float(key("final_logit_softcapping")); v && *v > 0)
    c.final_logit_softcapping = v;
  const std::string scaling = g.find_string(key("rope.scaling.type")).value_or("none");
  if (scaling == "linear") {
    c.rope_scaling = LinearScalingParams{g.find_float(key("rope.scaling.factor")).value_or(1.0)};
  } else if (scaling != "none") {
    fail(g.path(), "unsupported " + key("rope.scaling.type") + " '" + scaling + "'");
  }
  c.layer_is_sliding = pattern_layers(c.num_hidden_layers, c.sliding_window_pattern);
  if (const GgufValue* v = g.find(key("attention.sliding_window_pattern"))) {
    if (v->type == 9) {
      const GgufArray& arr = v->as_array(key("attention.sliding_window_pattern"));
      c.layer_is_sliding.clear();
      for (const GgufValue& e : arr)
        c.layer_is_sliding.push_back(e.as_bool(key("sliding_window_pattern")));
    } else {
      c.sliding_window_pattern =
          static_cast<int>(v->as_int(key("attention.sliding_window_pattern")));
      c.layer_is_sliding = pattern_layers(c.num_hidden_layers, c.sliding_window_pattern);
    }
  }
  c.bos_token_id = g.find_int("tokenizer.ggml.bos_token_id").value_or(2);
  c.eos_token_ids = {g.find_int("tokenizer.ggml.eos_token_id").value_or(1)};
  if (auto eot = g.find_int("tokenizer.ggml.eot_token_id")) c.eos_token_ids.push_back(*eot);
  // <end_of_turn> ends a chat turn in every Gemma 3 vocabulary (id 106).
  if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), 106) == c.eos_token_ids.end())
    c.eos_token_ids.push_back(106);
  c.embed_scale_dtype = DType::kF32;  // llama.cpp computes the embedding scale in f32
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  const TensorView& embd = g.tensor("token_embd.weight");
  c.dtype = embd.dtype;
  c.quant_config = "gguf:" + std::string(dtype_name(embd.dtype));
  if (embd.shape.size() != 2) fail(g.path(), "token_embd.weight must be 2-D");
  c.vocab_size = embd.shape[0];
  c.validate();
  return c;
}

}  // namespace gemmax
