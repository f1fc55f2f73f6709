#include <filesystem>

#include "io/gguf_reader.h"
#include "tokenizer/loader.h"

namespace gemmax {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    const fs::path json = p / "tokenizer.json";
    if (!fs::exists(json, ec)) throw TokenizerError(path + ": directory has no tokenizer.json");
    return std::make_unique<Tokenizer>(
        spec_from_hf_files(json.string(), (p / "tokenizer_config.json").string()));
  }
  if (!fs::exists(p, ec)) throw TokenizerError(path + ": no such file or directory");
  if (p.extension() == ".gguf") {
    try {
      // Arrays are only stepped over (and kept as views of the file): the tokenizer reads its
      // three 262144-entry arrays with GgufValue::strings/numbers instead of ~40 MB of GgufValues.
      TokenizerSpec spec;
      {
        const GgufReader gguf(path, GgufReadOptions{.max_array_elements = 4096});
        spec = spec_from_gguf(gguf);
      }  // unmapped: the vocabulary arrays' file pages (~6.5 MB) leave the RSS before the
         // merges are derived from the scores
      return std::make_unique<Tokenizer>(std::move(spec));
    } catch (const GgufError& e) {
      throw TokenizerError(e.what());
    }
  }
  if (p.extension() == ".json")
    return std::make_unique<Tokenizer>(
        spec_from_hf_files(path, (p.parent_path() / "tokenizer_config.json").string()));
  throw TokenizerError(path + ": not a .gguf, a tokenizer.json or a directory holding one");
}

}  // namespace gemmax
