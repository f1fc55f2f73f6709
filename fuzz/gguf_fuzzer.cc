// libFuzzer target for the GGUF parser and the tokenizer read from GGUF metadata. Any input must
// either parse or throw GgufError (TokenizerError for the tokenizer); everything else (crash,
// sanitizer report, other exception, timeout, out-of-memory) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "io/gguf_reader.h"
#include "tokenizer/loader.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    // Both the full reader and the tensor-only one a model opens (long arrays skipped, not
    // decoded), by the input's last byte.
    gemmax::GgufReadOptions options;
    if (size > 0 && (data[size - 1] & 1)) options.max_array_elements = 2;
    gemmax::GgufReader reader(bytes, "fuzz", options);
    // Touch every tensor byte: a view that escapes the input shows up as an ASan report here.
    uint8_t sum = 0;
    for (const gemmax::TensorView& t : reader.tensors()) {
      for (size_t i = 0; i < t.nbytes; ++i) sum ^= static_cast<uint8_t>(t.data[i]);
    }
    // Exercise the typed accessors on every key; mismatches must throw GgufError, nothing else.
    for (const auto& [key, value] : reader.metadata()) {
      try {
        sum ^= static_cast<uint8_t>(reader.get_int(key));
      } catch (const gemmax::GgufError&) {
      }
      try {
        sum ^= static_cast<uint8_t>(reader.get_float(key) != 0.0);
        sum ^= static_cast<uint8_t>(reader.get_string(key).size());
      } catch (const gemmax::GgufError&) {
      }
      try {
        sum ^= static_cast<uint8_t>(value.as_array(key).size() + value.as_bool(key));
      } catch (const gemmax::GgufError&) {
      }
      // The array readers that also walk skipped arrays' bytes (the tokenizer's path).
      try {
        for (const std::string_view v : value.strings(key)) sum ^= static_cast<uint8_t>(v.size());
      } catch (const gemmax::GgufError&) {
      }
      try {
        for (const double v : value.numbers(key)) sum ^= static_cast<uint8_t>(v != 0.0);
      } catch (const gemmax::GgufError&) {
      }
    }
    // The tokenizer a GGUF carries (tokens, scores, types, merges derived from scores).
    try {
      const gemmax::Tokenizer tokenizer(gemmax::spec_from_gguf(reader));
      for (const int32_t id : tokenizer.encode("fuzz <b>a b\xE2\x96\x81"
                                               "c"))
        sum ^= static_cast<uint8_t>(id);
    } catch (const gemmax::TokenizerError&) {
    } catch (const gemmax::GgufError&) {
    }
    volatile uint8_t sink = sum;
    (void)sink;
  } catch (const gemmax::GgufError&) {
  }
  return 0;
}
