// Tokenizer throughput on the real Gemma 3 tokenizer.json: encode of mixed text (the golden encode
// cases joined by newlines) and of 1 MB with no spaces (one BPE word), and decode. Compare with
// tools/tokenizer_bench_hf.py, which times HF `tokenizers` on the same texts, one thread.
//
//   tokenizer_bench [path/to/tokenizer.json]   (default: shared/testdata/gemma3-tokenizer)
#include <benchmark/benchmark.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/loader.h"
#include "tokenizer/tokenizer.h"

namespace gemmax {
namespace {

std::string tokenizer_dir() {
  if (const char* dir = std::getenv("GEMMAX_TOKENIZER_DIR")) return dir;
  return std::string(GEMMAX_SHARED_DIR) + "/testdata/gemma3-tokenizer";
}

const Tokenizer& tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = load_tokenizer(tokenizer_dir() + "/tokenizer.json");
  return *tok;
}

// Every golden encode text joined by "\n", repeated to at least 1 MB.
std::string mixed_text() {
  std::ifstream in(tokenizer_dir() + "/encode_cases.jsonl");
  std::string joined;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) joined += nlohmann::json::parse(line)["text"].get<std::string>() + "\n";
  }
  std::string text;
  while (text.size() < (1u << 20)) text += joined;
  return text;
}

std::string no_space_text() {
  std::string text;
  const std::string chunk =
      "Thequickbrownfoxjumpsoverthelazydog\xE4\xB8\xAD\xE6\x96\x87\xF0\x9F\x98\x80";
  while (text.size() < (1u << 20)) text += chunk;
  return text;
}

void run_encode(benchmark::State& state, const std::string& text) {
  const Tokenizer& tok = tokenizer();
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode(text, {.add_bos = false}));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

void BM_EncodeMixed(benchmark::State& state) { run_encode(state, mixed_text()); }
void BM_EncodeNoSpaces(benchmark::State& state) { run_encode(state, no_space_text()); }

void BM_DecodeMixed(benchmark::State& state) {
  const Tokenizer& tok = tokenizer();
  const std::string text = mixed_text();
  const auto ids = tok.encode(text, {.add_bos = false});
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

BENCHMARK(BM_EncodeMixed)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeNoSpaces)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeMixed)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gemmax

BENCHMARK_MAIN();
