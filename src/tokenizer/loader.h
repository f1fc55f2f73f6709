// Building a Tokenizer from model files: HF tokenizer.json (+ tokenizer_config.json beside it) or a
// GGUF file's tokenizer.ggml.* metadata. Both give identical ids for Gemma 3 (tested on the real
// files).
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace gemmax {

class GgufReader;

// tokenizer.json (and tokenizer_config.json, when `config_path` names an existing file) -> spec.
// Throws TokenizerError naming the file and field for anything this tokenizer cannot reproduce.
TokenizerSpec spec_from_hf_files(const std::string& tokenizer_json_path,
                                 const std::string& config_path = "");

// GGUF metadata (tokenizer.ggml.model "llama": tokens + scores + token_type, merges optional) ->
// spec.
TokenizerSpec spec_from_gguf(const GgufReader& gguf);

// `path` is a HF model directory (holding tokenizer.json), a tokenizer.json, or a .gguf file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace gemmax
