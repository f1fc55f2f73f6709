#include "cli/loaded_model.h"

#include <chrono>
#include <stdexcept>

#include "model/default_model.h"
#include "tokenizer/loader.h"

namespace gemmax::cli {

LoadedModel load_model(const std::string& path, int threads, bool with_tokenizer) {
  const auto start = std::chrono::steady_clock::now();
  LoadedModel m;
  const std::string resolved = resolve_model_path(path);
  m.checkpoint = Gemma3Checkpoint::open(resolved);
  m.model = std::make_unique<Gemma3Model>(m.checkpoint->config(), m.checkpoint->weights(), threads);
  if (with_tokenizer) m.tokenizer = load_tokenizer(resolved);
  m.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

std::vector<int32_t> parse_ids(const std::string& csv) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start <= csv.size()) {
    size_t end = csv.find(',', start);
    if (end == std::string::npos) end = csv.size();
    const std::string item = csv.substr(start, end - start);
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX)
      throw std::invalid_argument("--prompt-ids: '" + item + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
    start = end + 1;
  }
  return ids;
}

std::vector<int32_t> prompt_tokens(const LoadedModel& m, const std::string& ids,
                                   const std::string& text) {
  if (ids.empty() == text.empty())
    throw std::invalid_argument("give exactly one of --prompt-ids and --prompt");
  std::vector<int32_t> tokens = ids.empty() ? m.tokenizer->encode(text) : parse_ids(ids);
  if (tokens.empty()) throw std::invalid_argument("the prompt is empty");
  return tokens;
}

DType parse_kv_dtype(const std::string& name) {
  if (name == "f32") return DType::kF32;
  if (name == "f16") return DType::kF16;
  if (name == "bf16") return DType::kBF16;
  throw std::invalid_argument("--kv-dtype: unknown type '" + name +
                              "' (expected f32, f16 or bf16)");
}

PagedKVCache single_sequence_cache(const Gemma3Model& model, int64_t max_tokens, DType kv_dtype) {
  const KVCacheParams params = model.kv_params(kv_dtype);
  // Every layer may hold one partly filled page at each end of its window, plus the chunk in
  // flight.
  const int64_t per_layer = (max_tokens + params.page_size - 1) / params.page_size + 2;
  PagedKVCache cache(params, per_layer * params.num_layers);
  cache.prefault();
  return cache;
}

}  // namespace gemmax::cli
