// What the model-running subcommands share: resolve --model (or the default model), open the
// checkpoint, build the model, and turn --prompt / --prompt-ids into token ids.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/gemma3_model.h"
#include "model/gemma3_weights.h"
#include "tokenizer/tokenizer.h"

namespace gemmax::cli {

struct LoadedModel {
  std::unique_ptr<Gemma3Checkpoint> checkpoint;
  std::unique_ptr<Gemma3Model> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the checkpoint has none
  double load_seconds = 0;
};

// `path` empty means the default model. The tokenizer is loaded when `with_tokenizer` (failing to
// find one is then an error naming the path).
LoadedModel load_model(const std::string& path, int threads, bool with_tokenizer);

// "2,818,5" -> ids; throws naming the bad element.
std::vector<int32_t> parse_ids(const std::string& csv);

// The prompt from --prompt-ids or --prompt (tokenized with <bos>); exactly one must be given.
std::vector<int32_t> prompt_tokens(const LoadedModel& m, const std::string& ids,
                                   const std::string& text);

// A KV cache with room for one sequence of `max_tokens` positions, storing K/V as kv_dtype.
PagedKVCache single_sequence_cache(const Gemma3Model& model, int64_t max_tokens,
                                   DType kv_dtype = DType::kF32);

// --kv-dtype: "f32", "f16" or "bf16" (throws naming the value otherwise).
DType parse_kv_dtype(const std::string& name);

}  // namespace gemmax::cli
