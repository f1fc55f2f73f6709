// Helpers shared by the reader tests: fixture paths and the value pattern of the float fixtures.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>

namespace gemmax::testing {

inline std::string io_fixture(const std::string& name) {
  return std::string(GEMMAX_SOURCE_DIR) + "/tests/fixtures/io/" + name;
}

// Expected values of the F32/F16/BF16 fixtures: offset + i * scale (exact in every format).
inline float pattern(int i, float scale, float offset) {
  return offset + static_cast<float>(i) * scale;
}

// Unaligned little-endian load of a T from tensor bytes.
template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace gemmax::testing
