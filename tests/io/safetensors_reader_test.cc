// safetensors reader against fixtures from tools/make_io_test_files.py (single file, sharded index
// with a decoy model.safetensors beside it) and against small hand-built headers for each
// validation rule.
#include "io/safetensors_reader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "io_test_util.h"
#include "tensor/half.h"

namespace gemmax {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return testing::io_fixture(name); }
using testing::load;
using testing::pattern;

// A fresh temporary directory, removed with the object.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("gemmax_io_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors image from a header text and a data section.
std::string image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// Parses `bytes` through a temporary file and returns the SafetensorsError message ("" if none).
std::string error_of(const std::string& bytes) {
  TempDir dir;
  const fs::path p = dir.path() / "x.safetensors";
  write_file(p, bytes);
  try {
    SafetensorsReader r(p.string());
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "";
}

TEST(SafetensorsReader, SingleFileTensorsAndValues) {
  SafetensorsReader r(fixture("single.safetensors"));
  EXPECT_EQ(r.tensors().size(), 5u);  // positions (I64) is listed separately
  const TensorView& f32 = r.tensor("f32");
  EXPECT_EQ(f32.dtype, DType::kF32);
  EXPECT_EQ(f32.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f32.nbytes, 24u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(load<float>(f32.data + 4 * i), pattern(i, 0.25f, -1.f));

  const TensorView& f16 = r.tensor("f16");
  EXPECT_EQ(f16.dtype, DType::kF16);
  EXPECT_EQ(f16.shape, (std::vector<int64_t>{4}));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(f16_to_f32(load<uint16_t>(f16.data + 2 * i)), pattern(i, 0.5f, -1.f));
  }
  const TensorView& bf16 = r.tensor("bf16");
  EXPECT_EQ(bf16.dtype, DType::kBF16);
  EXPECT_EQ(bf16.shape, (std::vector<int64_t>{2, 2}));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(bf16_to_f32(load<uint16_t>(bf16.data + 2 * i)), pattern(i, 1.f, -2.f));
  }
  const TensorView& scalar = r.tensor("scalar");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(load<float>(scalar.data), 3.5f);
  const TensorView& empty = r.tensor("empty");
  EXPECT_EQ(empty.shape, (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(empty.nbytes, 0u);

  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("note"), "gemmax fixture");
  EXPECT_EQ(r.files().size(), 1u);
}

TEST(SafetensorsReader, UnsupportedDtypeIsListedAndRejectedByName) {
  SafetensorsReader r(fixture("single.safetensors"));
  EXPECT_EQ(r.find_tensor("positions"), nullptr);
  ASSERT_EQ(r.unsupported_tensors().count("positions"), 1u);
  EXPECT_EQ(r.unsupported_tensors().at("positions"), "I64");
  try {
    r.tensor("positions");
    FAIL() << "expected SafetensorsError";
  } catch (const SafetensorsError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'positions'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("I64"), std::string::npos) << msg;
  }
  try {
    r.tensor("nope");
    FAIL() << "expected SafetensorsError";
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos) << e.what();
  }
}

void expect_sharded(const SafetensorsReader& r) {
  EXPECT_EQ(r.tensors().size(), 3u);
  EXPECT_EQ(r.find_tensor("decoy"), nullptr);
  EXPECT_EQ(r.files().size(), 2u);
  EXPECT_EQ(r.tensor("a.weight").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(load<float>(r.tensor("a.weight").data + 12), pattern(3, 0.25f, -1.f));
  EXPECT_EQ(r.tensor("b.weight").dtype, DType::kBF16);
  EXPECT_EQ(bf16_to_f32(load<uint16_t>(r.tensor("b.weight").data + 4)), 2.f);
  const TensorView& c = r.tensor("c.weight");
  EXPECT_EQ(c.dtype, DType::kF16);
  EXPECT_EQ(c.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f16_to_f32(load<uint16_t>(c.data + 10)), 2.5f);
  EXPECT_EQ(r.metadata().at("shard"), "1");  // metadata comes from the first shard
}

TEST(SafetensorsReader, ShardedThroughIndexFile) {
  expect_sharded(SafetensorsReader(fixture("sharded/model.safetensors.index.json")));
}

TEST(SafetensorsReader, DirectoryPrefersIndexOverSingleFile) {
  expect_sharded(SafetensorsReader(fixture("sharded")));
}

TEST(SafetensorsReader, DirectoryWithOneFile) {
  TempDir dir;
  fs::copy_file(fixture("single.safetensors"), dir.path() / "weights.safetensors");
  SafetensorsReader r(dir.path().string());
  EXPECT_EQ(r.tensors().size(), 5u);
  fs::copy_file(fixture("single.safetensors"), dir.path() / "other.safetensors");
  EXPECT_THROW(SafetensorsReader(dir.path().string()), SafetensorsError);  // ambiguous
}

TEST(SafetensorsReader, InMemoryImage) {
  const std::string bytes = image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                  std::string("\0\0\x80\x3f", 4));
  SafetensorsReader r(std::as_bytes(std::span(bytes)), "mem");
  EXPECT_EQ(load<float>(r.tensor("w").data), 1.f);
  EXPECT_TRUE(r.files().empty());
}

TEST(SafetensorsReader, IndexErrorsNameTheTensorOrShard) {
  TempDir dir;
  const std::string shard =
      image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  write_file(dir.path() / "s1.safetensors", shard);
  auto index_error = [&](const std::string& json) -> std::string {
    write_file(dir.path() / "model.safetensors.index.json", json);
    try {
      SafetensorsReader r(dir.path().string());
    } catch (const SafetensorsError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(index_error(R"({"weight_map":{"x":"s1.safetensors"}})"), "");
  EXPECT_NE(index_error(R"({"weight_map":{"y":"s1.safetensors"}})").find("'y'"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"x":"../s1.safetensors"}})").find("'x'"),
            std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"x":"/etc/passwd"}})"), "");
  EXPECT_NE(index_error(R"({"weight_map":{"x":"missing.safetensors"}})").find("missing"),
            std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"x":7}})"), "");
  EXPECT_NE(index_error(R"({"weight_map":[]})").find("weight_map"), std::string::npos);
  EXPECT_NE(index_error(R"({"metadata":{}})").find("weight_map"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":)"), "");
  EXPECT_NE(index_error(R"([1,2])"), "");
}

TEST(SafetensorsReader, HeaderValidationRules) {
  const std::string four(4, '\0');
  struct Case {
    std::string header;
    std::string data;
    std::string expect;  // substring of the message
  };
  const Case cases[] = {
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", four, "JSON"},
      {R"([1,2,3])", four, "object"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       four, "duplicate key 'w'"},
      {R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", four, "'w'"},
      {R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", four, "dtype"},
      {R"({"w":{"shape":[1],"data_offsets":[0,4]}})", four, "dtype"},
      {R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", four, "shape"},
      {R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four, "non-negative"},
      {R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", four, "non-negative"},
      {R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", four, "shape"},
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", four,
       "overflows"},
      {R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", four,
       "non-negative"},
      {R"({"w":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,4]}})", four,
       "needs 9223372036854775808"},
      {R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})", four,
       "byte size overflows"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", four, "ordered"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", four, "ordered"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four, "needs 8"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", four, "data_offsets"},
      {R"({"w":{"dtype":"F32","shape":[1]}})", four, "data_offsets"},
      {R"({"w":[1]})", four, "'w'"},
      {R"({"__metadata__":{"a":1}})", four, "__metadata__"},
      {R"({"__metadata__":[]})", four, "__metadata__"},
  };
  for (const Case& c : cases) {
    const std::string msg = error_of(image(c.header, c.data));
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.header << "\n  -> " << msg;
    EXPECT_NE(msg.find("x.safetensors"), std::string::npos) << msg;  // names the file
  }
}

TEST(SafetensorsReader, HeaderLengthValidation) {
  const std::string good = image(R"({})", "");
  EXPECT_EQ(error_of(good), "");
  EXPECT_NE(error_of(""), "");
  EXPECT_NE(error_of(std::string(7, '\0')), "");
  for (uint64_t n : {uint64_t{3}, uint64_t{100'000'001}, ~uint64_t{0}, uint64_t{1} << 63}) {
    std::string bad = good;
    std::memcpy(bad.data(), &n, 8);
    EXPECT_NE(error_of(bad).find("header length"), std::string::npos) << n;
  }
}

}  // namespace
}  // namespace gemmax
