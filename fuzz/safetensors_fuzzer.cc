// libFuzzer target for the safetensors parser. Any input must either parse or throw
// SafetensorsError.
#include <cstddef>
#include <cstdint>
#include <span>

#include "io/safetensors_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    gemmax::SafetensorsReader reader(bytes, "fuzz");
    // Touch every tensor byte: a view that escapes the input shows up as an ASan report here.
    uint8_t sum = 0;
    for (const auto& [name, t] : reader.tensors()) {
      for (size_t i = 0; i < t.nbytes; ++i) sum ^= static_cast<uint8_t>(t.data[i]);
      (void)t.numel();
    }
    volatile uint8_t sink = sum;
    (void)sink;
  } catch (const gemmax::SafetensorsError&) {
  }
  return 0;
}
