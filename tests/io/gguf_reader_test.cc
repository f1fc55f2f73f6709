// GGUF reader against fixtures written by gguf-py's GGUFWriter (tools/make_io_test_files.py).
// Tensor contents follow formulas from that script, recomputed here, so values are checked, not
// just sizes.
#include "io/gguf_reader.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "io_test_util.h"
#include "tensor/half.h"

namespace gemmax {
namespace {

std::string fixture(const std::string& name) { return testing::io_fixture(name); }
using testing::load;
using testing::pattern;

TEST(GgufReader, ReadsEveryScalarType) {
  GgufReader r(fixture("all_types.gguf"));
  EXPECT_EQ(r.version(), 3u);
  EXPECT_EQ(r.get_int("test.u8"), 200);
  EXPECT_EQ(r.get_int("test.i8"), -100);
  EXPECT_EQ(r.get_int("test.u16"), 60000);
  EXPECT_EQ(r.get_int("test.i16"), -30000);
  EXPECT_EQ(r.get_int("test.u32"), 4000000000);
  EXPECT_EQ(r.get_int("test.i32"), -2000000000);
  EXPECT_EQ(r.get_int("test.i64"), -(int64_t{1} << 62));
  EXPECT_EQ(r.get_float("test.f32"), 1.5);
  EXPECT_EQ(r.get_float("test.f64"), -2.25);
  EXPECT_EQ(r.find_bool("test.bool_true"), true);
  EXPECT_EQ(r.find_bool("test.bool_false"), false);
  EXPECT_EQ(r.get_string("test.string"), "h\xc3\xa9llo gguf");
  EXPECT_EQ(r.get_string("test.empty_string"), "");
  EXPECT_EQ(r.get_string("general.architecture"), "gemma3");
  EXPECT_EQ(r.get_int("gemma3.block_count"), 2);

  // Type ids as stored.
  const uint32_t expected_types[][2] = {{0, 0}, {1, 0}, {2, 0}, {3, 0},  {4, 0},  {5, 0},
                                        {6, 0}, {7, 0}, {8, 0}, {10, 0}, {11, 0}, {12, 0}};
  const char* keys[] = {"test.u8",     "test.i8",  "test.u16", "test.i16",
                        "test.u32",    "test.i32", "test.f32", "test.bool_true",
                        "test.string", "test.u64", "test.i64", "test.f64"};
  for (size_t i = 0; i < std::size(keys); ++i) {
    ASSERT_NE(r.find(keys[i]), nullptr) << keys[i];
    EXPECT_EQ(r.find(keys[i])->type, expected_types[i][0]) << keys[i];
  }
}

TEST(GgufReader, U64BeyondInt64IsReadButNotNarrowed) {
  GgufReader r(fixture("all_types.gguf"));
  const GgufValue* v = r.find("test.u64");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(std::get<uint64_t>(v->value), (uint64_t{1} << 63) + 5);
  EXPECT_THROW(r.get_int("test.u64"), GgufError);
  EXPECT_DOUBLE_EQ(r.get_float("test.u64"), 9223372036854775813.0);
}

TEST(GgufReader, ReadsArraysOfEveryElementType) {
  GgufReader r(fixture("all_types.gguf"));
  auto ints = [&](const std::string& key) {
    std::vector<int64_t> out;
    for (const GgufValue& v : r.find(key)->as_array(key)) out.push_back(v.as_int(key));
    return out;
  };
  EXPECT_EQ(ints("test.arr_u8"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(ints("test.arr_i8"), (std::vector<int64_t>{-1, 2}));
  EXPECT_EQ(ints("test.arr_u16"), (std::vector<int64_t>{65535}));
  EXPECT_EQ(ints("test.arr_i16"), (std::vector<int64_t>{-2, 3}));
  EXPECT_EQ(ints("test.arr_u32"), (std::vector<int64_t>{7, 8, 9}));
  EXPECT_EQ(ints("test.arr_i32"), (std::vector<int64_t>{-7, 8}));
  EXPECT_EQ(ints("test.arr_u64"), (std::vector<int64_t>{int64_t{1} << 40}));
  EXPECT_EQ(ints("test.arr_i64"), (std::vector<int64_t>{-(int64_t{1} << 40)}));
  EXPECT_EQ(r.find("test.arr_u8")->array_type, 0u);
  EXPECT_EQ(r.find("test.arr_i64")->array_type, 11u);

  const GgufArray& f32 = r.find("test.arr_f32")->as_array("k");
  ASSERT_EQ(f32.size(), 2u);
  EXPECT_EQ(f32[0].as_float("k"), 0.5);
  EXPECT_EQ(f32[1].as_float("k"), -1.0);
  EXPECT_EQ(r.find("test.arr_f64")->as_array("k").at(0).as_float("k"), 0.125);

  const GgufArray& bools = r.find("test.arr_bool")->as_array("k");
  ASSERT_EQ(bools.size(), 3u);
  EXPECT_TRUE(bools[0].as_bool("k"));
  EXPECT_FALSE(bools[1].as_bool("k"));
  EXPECT_TRUE(bools[2].as_bool("k"));

  const GgufArray& strings = r.find("test.arr_string")->as_array("k");
  ASSERT_EQ(strings.size(), 3u);
  EXPECT_EQ(strings[0].as_string("k"), "a");
  EXPECT_EQ(strings[1].as_string("k"), "");
  EXPECT_EQ(strings[2].as_string("k"), "<bos>");
  EXPECT_EQ(r.find("test.arr_string")->array_type, 8u);
}

TEST(GgufReader, ReadsNestedArrays) {
  GgufReader r(fixture("all_types.gguf"));
  const GgufArray& outer = r.find("test.nested")->as_array("k");
  EXPECT_EQ(r.find("test.nested")->array_type, 9u);
  ASSERT_EQ(outer.size(), 3u);
  std::vector<std::vector<int64_t>> got;
  for (const GgufValue& inner : outer) {
    got.emplace_back();
    for (const GgufValue& v : inner.as_array("k")) got.back().push_back(v.as_int("k"));
  }
  EXPECT_EQ(got, (std::vector<std::vector<int64_t>>{{1, 2}, {3}, {4, 5, 6}}));

  const GgufArray& deep = r.find("test.nested2")->as_array("k");
  ASSERT_EQ(deep.size(), 2u);
  EXPECT_EQ(deep[1].as_array("k").at(0).as_array("k").at(1).as_string("k"), "z");
}

TEST(GgufReader, TypedLookupErrorsNameFileAndKey) {
  GgufReader r(fixture("all_types.gguf"));
  try {
    r.get_int("test.string");
    FAIL() << "expected GgufError";
  } catch (const GgufError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("all_types.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test.string"), std::string::npos) << msg;
  }
  EXPECT_THROW(r.get_string("test.u8"), GgufError);
  EXPECT_THROW(r.get_float("test.arr_u8"), GgufError);
  EXPECT_THROW(r.find("test.u8")->as_bool("test.u8"), GgufError);
  EXPECT_THROW(r.find("test.u8")->as_array("test.u8"), GgufError);
  EXPECT_THROW(r.get_int("no.such.key"), GgufError);
  EXPECT_FALSE(r.find_int("no.such.key").has_value());
  EXPECT_FALSE(r.find_string("no.such.key").has_value());
  EXPECT_FALSE(r.has("no.such.key"));
  // Present but mistyped is an error even through find_*: silently ignoring it would hide bad
  // files.
  EXPECT_THROW(r.find_int("test.string"), GgufError);
}

TEST(GgufReader, TensorInfosAreReversedToOutermostFirst) {
  GgufReader r(fixture("all_types.gguf"));
  const auto& ts = r.tensors();
  ASSERT_EQ(ts.size(), 7u);
  const char* names[] = {"f32", "f16", "bf16", "vec", "cube", "q8_0", "q4_k"};
  for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(ts[i].name, names[i]);
  EXPECT_EQ(r.tensor("f32").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r.tensor("f16").shape, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(r.tensor("bf16").shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(r.tensor("vec").shape, (std::vector<int64_t>{5}));
  EXPECT_EQ(r.tensor("cube").shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(r.tensor("q8_0").shape, (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(r.tensor("q4_k").shape, (std::vector<int64_t>{2, 256}));
  EXPECT_EQ(r.tensor("f32").dtype, DType::kF32);
  EXPECT_EQ(r.tensor("f16").dtype, DType::kF16);
  EXPECT_EQ(r.tensor("bf16").dtype, DType::kBF16);
  EXPECT_EQ(r.tensor("q8_0").dtype, DType::kQ8_0);
  EXPECT_EQ(r.tensor("q4_k").dtype, DType::kQ4_K);
  EXPECT_EQ(r.tensor("f32").nbytes, 24u);
  EXPECT_EQ(r.tensor("f16").nbytes, 64u);
  EXPECT_EQ(r.tensor("q8_0").nbytes, 2u * 2 * 34);
  EXPECT_EQ(r.tensor("q4_k").nbytes, 2u * 144);
  EXPECT_EQ(r.find_tensor("missing"), nullptr);
  try {
    r.tensor("missing");
    FAIL() << "expected GgufError";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("'missing'"), std::string::npos) << e.what();
  }
}

TEST(GgufReader, FloatTensorValues) {
  GgufReader r(fixture("all_types.gguf"));
  const TensorView& f32 = r.tensor("f32");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(load<float>(f32.data + 4 * i), pattern(i, 0.25f, -1.f));
  const TensorView& f16 = r.tensor("f16");
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(f16_to_f32(load<uint16_t>(f16.data + 2 * i)), pattern(i, 0.5f, -8.f)) << i;
  }
  const TensorView& bf16 = r.tensor("bf16");
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(bf16_to_f32(load<uint16_t>(bf16.data + 2 * i)), pattern(i, 1.f, -3.f)) << i;
  }
  const TensorView& cube = r.tensor("cube");
  // Element [1][2][3] of a [2,3,4] tensor is at 1*12 + 2*4 + 3 = 23.
  EXPECT_EQ(load<float>(cube.data + 4 * 23), 23.f);
  EXPECT_EQ(load<float>(r.tensor("vec").data + 4 * 4), 9.f);
}

TEST(GgufReader, QuantizedTensorBytes) {
  GgufReader r(fixture("all_types.gguf"));
  // Q8_0: block b of row r has scale 2^-(r+1) and quants (i + 3b + r) % 32 - 16.
  const TensorView& q8 = r.tensor("q8_0");
  for (int row = 0; row < 2; ++row) {
    for (int b = 0; b < 2; ++b) {
      const std::byte* block = q8.row(row) + 34 * b;
      EXPECT_EQ(f16_to_f32(load<uint16_t>(block)), std::ldexp(1.f, -(row + 1)));
      for (int i = 0; i < 32; ++i) {
        EXPECT_EQ(static_cast<int8_t>(block[2 + i]), (i + 3 * b + row) % 32 - 16);
      }
    }
  }
  // Q4_K bytes follow (7k + 3) mod 256 over the whole tensor.
  const TensorView& q4 = r.tensor("q4_k");
  for (size_t k = 0; k < q4.nbytes; ++k) {
    ASSERT_EQ(static_cast<unsigned>(q4.data[k]), (7 * k + 3) % 256) << k;
  }
}

TEST(GgufReader, TensorDataIsAlignedInsideTheFile) {
  for (const auto& [file, align] : {std::pair{"all_types.gguf", 32}, {"aligned64.gguf", 64}}) {
    GgufReader r(fixture(file));
    EXPECT_EQ(r.alignment(), static_cast<uint64_t>(align)) << file;
    EXPECT_EQ(r.data_offset() % align, 0u) << file;
    const std::byte* base = r.tensors().front().data - r.data_offset();
    for (const TensorView& t : r.tensors()) {
      EXPECT_EQ(static_cast<uint64_t>(t.data - base) % align, 0u) << file << " " << t.name;
    }
    EXPECT_EQ(load<float>(r.tensor("f32").data + 4), -0.75f) << file;
  }
}

TEST(GgufReader, ReadsVersion2) {
  GgufReader r(fixture("all_types_v2.gguf"));
  EXPECT_EQ(r.version(), 2u);
  EXPECT_EQ(r.tensors().size(), 7u);
  EXPECT_EQ(r.get_string("test.string"), "h\xc3\xa9llo gguf");
}

TEST(GgufReader, InMemoryImageMatchesFile) {
  std::ifstream in(fixture("all_types.gguf"), std::ios::binary);
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  GgufReader mem(bytes, "memory");
  GgufReader file(fixture("all_types.gguf"));
  EXPECT_EQ(mem.path(), "memory");
  ASSERT_EQ(mem.tensors().size(), file.tensors().size());
  for (size_t i = 0; i < mem.tensors().size(); ++i) {
    const TensorView& a = mem.tensors()[i];
    const TensorView& b = file.tensors()[i];
    EXPECT_EQ(a.shape, b.shape);
    ASSERT_EQ(a.nbytes, b.nbytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << a.name;
  }
  EXPECT_EQ(mem.metadata().size(), file.metadata().size());
}

TEST(GgufReader, MissingFileIsAGgufError) {
  EXPECT_THROW(GgufReader(fixture("does_not_exist.gguf")), GgufError);
  EXPECT_THROW(GgufReader(fixture("single.safetensors")), GgufError);  // wrong magic
}

}  // namespace
}  // namespace gemmax
