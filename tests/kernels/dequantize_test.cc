// dequantize_row against gguf-py's dequantizer (fixtures from tools/make_quant_fixtures.py) plus a
// few hand-computed blocks. Expected results are bit-exact: f16 -> f32 conversion is exact and the
// code evaluates the same f32 products in the same order as the reference, so no rounding can
// differ.
#include "kernels/dequantize.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "tensor/half.h"

namespace gemmax {
namespace {

struct Fixture {
  DType type;
  std::vector<std::byte> raw;
  std::vector<float> expected;
};

uint32_t read_u32(const std::vector<char>& buf, size_t off) {
  uint32_t v;
  std::memcpy(&v, buf.data() + off, sizeof v);
  return v;
}

Fixture load_fixture(const std::string& name) {
  const std::string path =
      std::string(GEMMAX_SOURCE_DIR) + "/tests/fixtures/kernels/" + name + ".gqfx";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  const std::vector<char> buf((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
  if (buf.size() < 20 || std::memcmp(buf.data(), "GQFX", 4) != 0 || read_u32(buf, 4) != 1) {
    throw std::runtime_error(path + ": bad header");
  }
  Fixture f;
  f.type = static_cast<DType>(read_u32(buf, 8));
  const uint32_t n = read_u32(buf, 12), n_bytes = read_u32(buf, 16);
  if (buf.size() != 20 + n_bytes + 4ull * n) throw std::runtime_error(path + ": bad size");
  f.raw.resize(n_bytes);
  std::memcpy(f.raw.data(), buf.data() + 20, n_bytes);
  f.expected.resize(n);
  std::memcpy(f.expected.data(), buf.data() + 20 + n_bytes, 4ull * n);
  return f;
}

class DequantizeFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(DequantizeFixture, MatchesGgufPyBitExactly) {
  const Fixture f = load_fixture(GetParam());
  // "real_Q4_K" holds rows of the real model in that format, "Q4_K" synthetic blocks.
  const std::string param = GetParam();
  const std::string format = param.starts_with("real_") ? param.substr(5) : param;
  ASSERT_EQ(dtype_name(f.type), format);
  std::vector<float> out(f.expected.size(), -1234.5f);
  dequantize_row(f.type, f.raw.data(), out.data(), static_cast<int64_t>(out.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(f.expected[i]))
        << GetParam() << " element " << i << ": got " << out[i] << " want " << f.expected[i];
  }
}

// The same bytes at an odd address, one block at a time: no alignment or cross-block assumptions.
TEST_P(DequantizeFixture, BlockByBlockFromUnalignedBuffer) {
  const Fixture f = load_fixture(GetParam());
  const DTypeLayout layout = require_layout(f.type);
  std::vector<std::byte> shifted(f.raw.size() + 1);
  std::memcpy(shifted.data() + 1, f.raw.data(), f.raw.size());
  std::vector<float> out(f.expected.size());
  for (size_t b = 0; b * layout.block_size < out.size(); ++b) {
    dequantize_row(f.type, shifted.data() + 1 + b * layout.block_bytes,
                   out.data() + b * layout.block_size, layout.block_size);
  }
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(f.expected[i])) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, DequantizeFixture,
                         ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                           "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
                                           "real_F32", "real_Q5_0", "real_Q8_0", "real_Q4_K",
                                           "real_Q6_K"),
                         [](const auto& info) { return info.param; });

void put_f16(std::vector<std::byte>& b, size_t off, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(b.data() + off, &h, 2);
}

// Hand-built blocks: values follow directly from the format description, independent of gguf-py.
TEST(Dequantize, Q4_0HandComputed) {
  std::vector<std::byte> b(18);
  put_f16(b, 0, 0.5f);
  b[2] = std::byte{0xF0};  // element 0: 0 - 8 = -8, element 16: 15 - 8 = 7
  for (int j = 1; j < 16; ++j) b[2 + j] = std::byte{0x88};
  std::vector<float> y(32);
  dequantize_row(DType::kQ4_0, b.data(), y.data(), 32);
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[16], 3.5f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[31], 0.0f);
}

TEST(Dequantize, Q5_0HighBitComesFromQh) {
  std::vector<std::byte> b(22);
  put_f16(b, 0, 1.0f);
  const uint32_t qh = (1u << 0) | (1u << 17);  // elements 0 and 17 get +16
  std::memcpy(b.data() + 2, &qh, 4);
  std::vector<float> y(32);
  dequantize_row(DType::kQ5_0, b.data(), y.data(), 32);
  EXPECT_EQ(y[0], 0.0f);    // 16 - 16
  EXPECT_EQ(y[17], 0.0f);   // 16 - 16
  EXPECT_EQ(y[1], -16.0f);  // 0 - 16
  EXPECT_EQ(y[16], -16.0f);
}

TEST(Dequantize, Q8_0HandComputed) {
  std::vector<std::byte> b(34);
  put_f16(b, 0, 0.25f);
  b[2] = std::byte{0x80};   // -128
  b[33] = std::byte{0x7f};  // 127
  std::vector<float> y(32);
  dequantize_row(DType::kQ8_0, b.data(), y.data(), 32);
  EXPECT_EQ(y[0], -32.0f);
  EXPECT_EQ(y[31], 31.75f);
}

TEST(Dequantize, Q4_KScalesAndMins) {
  std::vector<std::byte> b(144);
  put_f16(b, 0, 1.0f);           // d
  put_f16(b, 2, 0.5f);           // dmin
  b[4 + 0] = std::byte{3};       // scale 0 = 3
  b[4 + 4] = std::byte{2};       // min 0 = 2
  b[4 + 8] = std::byte{0x51};    // scale 4 low = 1, min 4 low = 5
  b[4 + 0] |= std::byte{0x40};   // scale 4 high bits = 01 -> scale 4 = 17
  b[16 + 0] = std::byte{0x0A};   // element 0 = 10 (low nibble), element 32 = 0
  b[16 + 64] = std::byte{0x02};  // chunk 2, element 128 (sub-block 4) = 2
  std::vector<float> y(256);
  dequantize_row(DType::kQ4_K, b.data(), y.data(), 256);
  EXPECT_EQ(y[0], 3.0f * 10.0f - 0.5f * 2.0f);
  EXPECT_EQ(y[1], -1.0f);
  EXPECT_EQ(y[128], 17.0f * 2.0f - 0.5f * 5.0f);
}

TEST(Dequantize, RejectsPartialBlocksNamingTheFormat) {
  std::vector<std::byte> b(64);
  std::vector<float> y(64);
  try {
    dequantize_row(DType::kQ8_0, b.data(), y.data(), 33);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("Q8_0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dequantize_row(DType::kQ4_K, b.data(), y.data(), 32), std::runtime_error);
  EXPECT_THROW(dequantize_row(DType::kF32, b.data(), y.data(), -1), std::runtime_error);
}

TEST(Dequantize, RejectsUnsupportedFormats) {
  std::vector<std::byte> b(512);
  std::vector<float> y(256);
  EXPECT_THROW(dequantize_row(DType::kQ8_1, b.data(), y.data(), 32), std::runtime_error);
  EXPECT_THROW(dequantize_row(static_cast<DType>(99), b.data(), y.data(), 32), std::runtime_error);
}

TEST(Dequantize, ZeroElementsIsANoOp) {
  float sentinel = 7.0f;
  dequantize_row(DType::kQ6_K, nullptr, &sentinel, 0);
  EXPECT_EQ(sentinel, 7.0f);
}

}  // namespace
}  // namespace gemmax
