// Paths and JSONL reading for the tokenizer tests.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gemmax::testing {

inline std::string shared_tokenizer_dir() {
  return std::string(GEMMAX_SHARED_DIR) + "/testdata/gemma3-tokenizer";
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

}  // namespace gemmax::testing
