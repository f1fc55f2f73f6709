// libFuzzer target for the GGUF parser. Any input must either parse or throw GgufError; everything
// else (crash, sanitizer report, other exception, timeout, out-of-memory) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "io/gguf_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    gemmax::GgufReader reader(bytes, "fuzz");
    // Touch every tensor byte: a view that escapes the input shows up as an ASan report here.
    uint8_t sum = 0;
    for (const gemmax::TensorView& t : reader.tensors()) {
      for (size_t i = 0; i < t.nbytes; ++i) sum ^= static_cast<uint8_t>(t.data[i]);
    }
    volatile uint8_t sink = sum;
    (void)sink;
  } catch (const gemmax::GgufError&) {
  }
  return 0;
}
