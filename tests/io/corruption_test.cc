// Corrupted and hostile inputs: valid fixtures truncated at every offset, every header byte
// overwritten, and targeted edits that set absurd counts, lengths, dims, types and offsets. Each
// must end in a GgufError / SafetensorsError naming the field at fault, never a crash, hang or huge
// allocation (the asan preset runs these too).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "io/gguf_reader.h"
#include "io/safetensors_reader.h"

namespace gemmax {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;

std::string fixture(const std::string& name) {
  return std::string(GEMMAX_SOURCE_DIR) + "/tests/fixtures/io/" + name;
}

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)), {});
  Bytes out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

// Writes `bytes` to a temporary file so the mmap path is exercised; removed on destruction.
class TempFile {
 public:
  explicit TempFile(const Bytes& bytes, const char* ext) {
    path_ = fs::temp_directory_path() / ("gemmax_corrupt_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(counter_++) + ext);
    std::ofstream(path_, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() { fs::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// Parses through a temp file; returns the GgufError message, "" when the file parsed. Any other
// exception type escapes and fails the test.
std::string gguf_error(const Bytes& bytes) {
  TempFile f(bytes, ".gguf");
  try {
    GgufReader r(f.path());
  } catch (const GgufError& e) {
    return e.what();
  }
  return "";
}

// Same, from memory (fast enough for thousands of variants).
bool gguf_parses(const Bytes& bytes) {
  try {
    GgufReader r(bytes, "mem");
    return true;
  } catch (const GgufError&) {
    return false;
  }
}

void put_u32(Bytes& b, size_t pos, uint32_t v) { std::memcpy(b.data() + pos, &v, 4); }
void put_u64(Bytes& b, size_t pos, uint64_t v) { std::memcpy(b.data() + pos, &v, 8); }

// Offset of the first byte after the length-prefixed string `s` stored in `b`.
size_t after_string(const Bytes& b, const std::string& s) {
  std::string needle(8, '\0');
  const uint64_t n = s.size();
  std::memcpy(needle.data(), &n, 8);
  needle += s;
  const std::string_view hay(reinterpret_cast<const char*>(b.data()), b.size());
  const size_t at = hay.find(needle);
  if (at == std::string_view::npos) throw std::runtime_error("fixture lacks " + s);
  return at + needle.size();
}

void expect_gguf_error_with(const Bytes& bytes, const GgufReadOptions& options,
                            std::initializer_list<std::string> parts) {
  try {
    GgufReader r(bytes, "mem", options);
    FAIL() << "parsed although it should not";
  } catch (const GgufError& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

void expect_gguf_error(const Bytes& bytes, std::initializer_list<std::string> parts) {
  const std::string msg = gguf_error(bytes);
  ASSERT_FALSE(msg.empty()) << "parsed although it should not";
  for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
}

class GgufCorruption : public ::testing::Test {
 protected:
  Bytes good_ = read_bytes(fixture("all_types.gguf"));
};

TEST_F(GgufCorruption, FixtureItselfParses) { EXPECT_EQ(gguf_error(good_), ""); }

TEST_F(GgufCorruption, TruncationAtEveryOffsetFails) {
  // The last tensor ends at the last byte, so every proper prefix is invalid.
  for (size_t n = 0; n < good_.size(); ++n) {
    const Bytes cut(good_.begin(), good_.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_FALSE(gguf_parses(cut)) << "prefix of " << n << " bytes";
    if (n % 61 == 0) {
      EXPECT_NE(gguf_error(cut), "") << n;  // and through the file path
    }
  }
}

TEST_F(GgufCorruption, OverwritingAnyHeaderByteNeverCrashes) {
  const size_t header_end = GgufReader(good_, "mem").data_offset();
  int rejected = 0;
  int total = 0;
  for (size_t pos = 0; pos < header_end; ++pos) {
    const std::byte original = good_[pos];
    for (std::byte v : {std::byte{0x00}, std::byte{0xFF}, std::byte{0x80}, std::byte{0x7F},
                        original ^ std::byte{0x01}, original ^ std::byte{0x40}}) {
      Bytes b = good_;
      b[pos] = v;
      rejected += !gguf_parses(b);
      ++total;
    }
  }
  // Most edits hit a length, count, type or dim and must be caught (string bytes may change
  // freely).
  EXPECT_GT(rejected, total / 3) << rejected << " of " << total;
}

TEST_F(GgufCorruption, HeaderFields) {
  Bytes b = good_;
  put_u32(b, 0, 0x46554746);
  expect_gguf_error(b, {"magic", "not a GGUF"});
  for (uint32_t version : {1u, 4u, 0x03000000u}) {
    b = good_;
    put_u32(b, 4, version);
    expect_gguf_error(b, {"version", std::to_string(version)});
  }
  b = good_;
  put_u64(b, 8, uint64_t{1} << 60);
  expect_gguf_error(b, {"tensor count"});
  b = good_;
  put_u64(b, 16, uint64_t{1} << 60);
  expect_gguf_error(b, {"metadata count"});
  b = good_;
  put_u64(b, 16, 1000);  // plausible count, but the pairs run into the tensor infos
  EXPECT_NE(gguf_error(b), "");
}

TEST_F(GgufCorruption, AbsurdArrayCountsFailBeforeAllocating) {
  for (const char* key : {"test.arr_u8", "test.arr_string", "test.arr_f64", "test.nested"}) {
    const size_t count_at = after_string(good_, key) + 4 + 4;  // value type, element type
    for (uint64_t count : {uint64_t{1} << 60, ~uint64_t{0}, uint64_t{1} << 32}) {
      Bytes b = good_;
      put_u64(b, count_at, count);
      expect_gguf_error(b, {key, "cannot fit"});
    }
  }
  Bytes b = good_;
  put_u32(b, after_string(good_, "test.arr_u8") + 4, 77);
  expect_gguf_error(b, {"test.arr_u8", "element type 77"});
}

TEST_F(GgufCorruption, BadStringsAndValues) {
  Bytes b = good_;
  put_u64(b, after_string(good_, "test.string") + 4, uint64_t{1} << 63);
  expect_gguf_error(b, {"test.string", "string length"});
  b = good_;
  put_u64(b, after_string(good_, "test.arr_string") + 16, 1'000'000);  // first element's length
  expect_gguf_error(b, {"test.arr_string"});
  b = good_;
  put_u32(b, after_string(good_, "test.u8"), 13);
  expect_gguf_error(b, {"test.u8", "unknown value type 13"});
  b = good_;
  b[after_string(good_, "test.bool_true") + 4] = std::byte{2};
  expect_gguf_error(b, {"test.bool_true", "bool"});
  // Key length: the 8 bytes before "test.u8".
  b = good_;
  put_u64(b, after_string(good_, "test.u8") - 7 - 8, uint64_t{1} << 40);
  expect_gguf_error(b, {"metadata key #", "string length"});
}

TEST_F(GgufCorruption, DuplicateNames) {
  Bytes b = good_;
  std::memcpy(b.data() + after_string(good_, "test.i8") - 7, "test.u8", 7);
  expect_gguf_error(b, {"'test.u8'", "duplicate key"});
  b = good_;
  std::memcpy(b.data() + after_string(good_, "f16") - 3, "f32", 3);
  expect_gguf_error(b, {"'f32'", "duplicate tensor"});
}

TEST_F(GgufCorruption, TensorInfoFields) {
  // Tensor info after the name: u32 n_dims, u64 dims[n_dims], u32 type, u64 offset.
  const size_t f32 = after_string(good_, "f32");    // 2 dims
  const size_t cube = after_string(good_, "cube");  // 3 dims
  const size_t q4k = after_string(good_, "q4_k");   // 2 dims, last tensor
  auto edit = [&](auto&& change, std::initializer_list<std::string> parts) {
    Bytes b = good_;
    change(b);
    expect_gguf_error(b, parts);
  };
  edit([&](Bytes& b) { put_u32(b, f32, 5); }, {"'f32'", "n_dims 5"});
  edit([&](Bytes& b) { put_u32(b, f32, 0); }, {"'f32'", "n_dims 0"});
  edit([&](Bytes& b) { put_u32(b, f32, 0xFFFFFFFF); }, {"'f32'", "n_dims"});
  edit([&](Bytes& b) { put_u64(b, f32 + 4, 0); }, {"'f32'", "dimension 0"});
  edit([&](Bytes& b) { put_u64(b, f32 + 4, uint64_t{1} << 63); }, {"'f32'", "dimension"});
  edit(
      [&](Bytes& b) {
        for (int d = 0; d < 3; ++d) put_u64(b, cube + 4 + 8 * d, uint64_t{1} << 31);
      },
      {"'cube'", "overflows"});
  edit([&](Bytes& b) { put_u64(b, f32 + 4 + 8, uint64_t{1} << 40); },
       {"'f32'", "outside the file"});
  edit([&](Bytes& b) { put_u32(b, f32 + 4 + 16, 99); }, {"'f32'", "type id 99"});
  edit([&](Bytes& b) { put_u32(b, f32 + 4 + 16, 4); }, {"'f32'", "type id 4"});  // removed Q4_2
  // gemmax's own load-time layouts (Q5_0x4) are never valid in a file.
  edit([&](Bytes& b) { put_u32(b, f32 + 4 + 16, 0x10006); }, {"'f32'", "type id 65542"});
  edit([&](Bytes& b) { put_u32(b, f32 + 4 + 16, 8); }, {"'f32'", "multiple of 32"});
  edit([&](Bytes& b) { put_u64(b, q4k + 4 + 16 + 4, uint64_t{1} << 63); }, {"'q4_k'", "outside"});
  edit([&](Bytes& b) { put_u64(b, q4k + 4 + 16 + 4, ~uint64_t{0} - 31); }, {"'q4_k'", "outside"});
  edit([&](Bytes& b) { put_u64(b, q4k + 4 + 16 + 4, 1952 + 32); }, {"'q4_k'", "outside"});
  edit([&](Bytes& b) { put_u64(b, q4k + 4 + 16 + 4, 1953); }, {"'q4_k'", "alignment"});
}

// Minimal GGUF writer for inputs the Python generator cannot express.
class GgufBuilder {
 public:
  GgufBuilder(uint64_t n_tensors, uint64_t n_kv) {
    u32(0x46554747);
    u32(3);
    u64(n_tensors);
    u64(n_kv);
  }
  GgufBuilder& u32(uint32_t v) { return raw(&v, 4); }
  GgufBuilder& u64(uint64_t v) { return raw(&v, 8); }
  GgufBuilder& str(const std::string& s) {
    u64(s.size());
    return raw(s.data(), s.size());
  }
  GgufBuilder& raw(const void* p, size_t n) {
    const auto* c = static_cast<const std::byte*>(p);
    bytes_.insert(bytes_.end(), c, c + n);
    return *this;
  }
  GgufBuilder& pad_to(size_t align) {
    while (bytes_.size() % align != 0) bytes_.push_back(std::byte{0});
    return *this;
  }
  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

TEST(GgufHandBuilt, EmptyFileAndEmptyArraysParse) {
  EXPECT_EQ(gguf_error(GgufBuilder(0, 0).bytes()), "");
  GgufBuilder b(0, 1);
  b.str("empty").u32(9).u32(9).u64(3);          // array of 3 arrays ...
  for (int i = 0; i < 3; ++i) b.u32(4).u64(0);  // ... each an empty u32 array
  GgufReader r(b.bytes(), "mem");
  const GgufArray& outer = r.find("empty")->as_array("empty");
  ASSERT_EQ(outer.size(), 3u);
  EXPECT_TRUE(outer[2].as_array("empty").empty());
  EXPECT_EQ(outer[2].array_type, 4u);
}

TEST(GgufHandBuilt, DeepNestingIsBounded) {
  GgufBuilder b(0, 1);
  b.str("deep").u32(9);
  for (int i = 0; i < 100; ++i) b.u32(9).u64(1);  // 100 levels of one-element arrays
  b.u32(0).u64(0);
  expect_gguf_error(b.bytes(), {"'deep'", "nested"});
}

TEST(GgufHandBuilt, ArrayElementBudget) {
  // 2^24 + 1 u8 elements fit in the bytes but exceed the decoded-element budget.
  const uint64_t n = (uint64_t{1} << 24) + 1;
  GgufBuilder b(0, 1);
  b.str("big").u32(9).u32(0).u64(n);
  const Bytes payload(n, std::byte{1});
  b.raw(payload.data(), payload.size());
  try {
    GgufReader r(b.bytes(), "mem");
    FAIL() << "expected GgufError";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("'big'"), std::string::npos) << e.what();
  }
}

// Arrays past GgufReadOptions::max_array_elements are stepped over with every check the decoding
// path makes, so the tensor-only reader of a model is as strict as the full one, and cheaper.
TEST(GgufHandBuilt, SkippedArraysAreCheckedNotDecoded) {
  const GgufReadOptions skip{.max_array_elements = 2};
  const std::byte one{1};
  GgufBuilder b(0, 4);
  b.str("small").u32(9).u32(4).u64(2).u32(7).u32(8);               // 2 u32: decoded
  b.str("words").u32(9).u32(8).u64(3).str("a").str("bc").str("");  // 3 strings: skipped
  b.str("nested").u32(9).u32(9).u64(3);                            // 3 arrays: skipped,
  for (int i = 0; i < 3; ++i) b.u32(7).u64(1).raw(&one, 1);        // one bool each
  b.str("after").u32(4).u32(42);
  const Bytes& good = b.bytes();
  EXPECT_EQ(GgufReader(good, "mem").find("words")->as_array("words").size(), 3u);

  const GgufReader r(good, "mem", skip);
  EXPECT_EQ(r.find("small")->as_array("small").at(1).as_int("small"), 8);
  EXPECT_EQ(r.get_int("after"), 42);  // the skipped values were stepped over exactly
  EXPECT_EQ(r.find("words")->array_type, 8u);
  EXPECT_EQ(std::get<GgufUnloadedArray>(r.find("words")->value).count, 3u);
  EXPECT_EQ(std::get<GgufUnloadedArray>(r.find("nested")->value).count, 3u);
  try {
    (void)r.find("words")->as_array("words");
    FAIL() << "expected GgufError";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("'words'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 elements"), std::string::npos) << e.what();
  }

  // Corrupt skipped values fail as decoded ones do: every truncation, a bool of 2, a string
  // longer than the file, an unknown element type.
  for (size_t n = 0; n < good.size(); ++n) {
    const Bytes cut(good.begin(), good.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_THROW(GgufReader(cut, "mem", skip), GgufError) << "prefix of " << n << " bytes";
  }
  Bytes bad_bool = good;
  const size_t after_bytes = 8 + 5 + 4 + 4;                // "after": key, type, value
  bad_bool[good.size() - after_bytes - 1] = std::byte{2};  // the last nested bool
  expect_gguf_error_with(bad_bool, skip, {"'nested'", "bool value 2"});
  GgufBuilder huge(0, 1);
  const Bytes padding(64, std::byte{0});  // so the counts fit the bytes left
  huge.str("s").u32(9).u32(8).u64(3).u64(uint64_t{1} << 40).raw(padding.data(), padding.size());
  expect_gguf_error_with(huge.bytes(), skip, {"'s'", "string length"});
  GgufBuilder unknown(0, 1);
  unknown.str("u").u32(9).u32(9).u64(3).u32(77).u64(0).raw(padding.data(), padding.size());
  expect_gguf_error_with(unknown.bytes(), skip, {"'u'", "unknown array element type 77"});
}

// GgufValue::strings / numbers read an array the same way whether the reader decoded it or only
// stepped over it (a tokenizer's 262144-entry arrays), and refuse the wrong element type.
TEST(GgufHandBuilt, ArraysReadAsStringsOrNumbersDecodedOrSkipped) {
  GgufBuilder b(0, 5);
  b.str("words").u32(9).u32(8).u64(3).str("a").str("b c").str("");
  const float scores[3] = {-1.5f, 0.0f, 1e20f};
  b.str("scores").u32(9).u32(6).u64(3).raw(scores, sizeof(scores));
  const int32_t types[4] = {1, -3, 6, 2147483647};
  b.str("types").u32(9).u32(5).u64(4).raw(types, sizeof(types));
  const uint8_t flags[3] = {1, 0, 0};
  b.str("flags").u32(9).u32(7).u64(3).raw(flags, sizeof(flags));
  b.str("one").u32(4).u32(7);
  const Bytes& bytes = b.bytes();
  for (uint64_t limit : {UINT64_MAX, uint64_t{0}}) {
    SCOPED_TRACE(limit == 0 ? "skipped" : "decoded");
    const GgufReader r(bytes, "mem", GgufReadOptions{.max_array_elements = limit});
    EXPECT_EQ(r.find("words")->strings("words"), (std::vector<std::string_view>{"a", "b c", ""}));
    EXPECT_EQ(r.find("scores")->numbers("scores"), (std::vector<double>{-1.5, 0.0, 1e20f}));
    EXPECT_EQ(r.find("types")->numbers("types"), (std::vector<double>{1, -3, 6, 2147483647}));
    for (const char* key : {"words", "flags", "one"})
      EXPECT_THROW(r.find(key)->numbers(key), GgufError);
    for (const char* key : {"scores", "types", "flags", "one"})
      EXPECT_THROW(r.find(key)->strings(key), GgufError);
  }
}

TEST(GgufHandBuilt, AlignmentMustBeAPowerOfTwo) {
  for (uint32_t align : {0u, 3u, 48u, 0x80000000u}) {
    GgufBuilder b(0, 1);
    b.str("general.alignment").u32(4).u32(align);
    expect_gguf_error(b.bytes(), {"general.alignment"});
  }
  GgufBuilder s(0, 1);
  s.str("general.alignment").u32(8).str("32");
  expect_gguf_error(s.bytes(), {"general.alignment"});

  // A valid 16-byte alignment moves the data section and is honoured for offsets.
  GgufBuilder ok(1, 1);
  ok.str("general.alignment").u32(4).u32(16);
  ok.str("t").u32(1).u64(4).u32(0).u64(16);
  ok.pad_to(16);
  const float values[8] = {0, 0, 0, 0, 1, 2, 3, 4};
  ok.raw(values, sizeof(values));
  GgufReader r(ok.bytes(), "mem");
  EXPECT_EQ(r.alignment(), 16u);
  float got[4];
  std::memcpy(got, r.tensor("t").data, 16);
  EXPECT_EQ(got[3], 4.f);
}

// ---- safetensors
// -------------------------------------------------------------------------------------

std::string st_error(const Bytes& bytes) {
  TempFile f(bytes, ".safetensors");
  try {
    SafetensorsReader r(f.path());
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "";
}

bool st_parses(const Bytes& bytes) {
  try {
    SafetensorsReader r(bytes, "mem");
    return true;
  } catch (const SafetensorsError&) {
    return false;
  }
}

TEST(SafetensorsCorruption, TruncationAtEveryOffsetFails) {
  const Bytes good = read_bytes(fixture("single.safetensors"));
  ASSERT_TRUE(st_parses(good));
  for (size_t n = 0; n < good.size(); ++n) {
    const Bytes cut(good.begin(), good.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_FALSE(st_parses(cut)) << n;
    if (n % 53 == 0) {
      EXPECT_NE(st_error(cut), "") << n;
    }
  }
}

TEST(SafetensorsCorruption, OverwritingAnyHeaderByteNeverCrashes) {
  const Bytes good = read_bytes(fixture("single.safetensors"));
  uint64_t header_len = 0;
  std::memcpy(&header_len, good.data(), 8);
  int rejected = 0;
  for (size_t pos = 0; pos < 8 + header_len; ++pos) {
    for (std::byte v : {std::byte{0}, std::byte{'"'}, std::byte{'9'}, std::byte{'-'},
                        std::byte{'}'}, std::byte{0xFF}}) {
      Bytes b = good;
      b[pos] = v;
      rejected += !st_parses(b);
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(SafetensorsCorruption, HeaderLengthField) {
  const Bytes good = read_bytes(fixture("single.safetensors"));
  for (uint64_t n : {uint64_t{0}, uint64_t{1} << 62, ~uint64_t{0}, uint64_t{good.size()}}) {
    Bytes b = good;
    put_u64(b, 0, n);
    EXPECT_NE(st_error(b), "") << n;
  }
}

}  // namespace
}  // namespace gemmax
