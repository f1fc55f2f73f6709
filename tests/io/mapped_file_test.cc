// MappedFile: the bytes of the file, at a 2 MiB-aligned address for files of 2 MiB or more (so the
// kernel can map them with huge pages), and a clear error for what cannot be mapped.
#include "io/mapped_file.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace gemmax {
namespace {

std::string write_file(const std::string& name, const std::vector<char>& bytes) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("gemmax_mapped_" + name)).string();
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::vector<char> random_bytes(size_t n) {
  std::mt19937 rng(5);
  std::vector<char> v(n);
  for (char& c : v) c = static_cast<char>(rng());
  return v;
}

// Released pages leave the resident set but the mapping still reads the file's bytes (read again
// on touch); ranges that are not inside the mapping are ignored.
TEST(MappedFile, ReleasedPagesStillReadTheFile) {
  const size_t n = (size_t{3} << 20) + 777;
  const std::vector<char> bytes = random_bytes(n);
  const std::string path = write_file("release", bytes);
  {
    MappedFile f(path);
    ASSERT_EQ(std::memcmp(f.data(), bytes.data(), n), 0);
    f.release_pages(f.data() + 5000, (size_t{2} << 20) + 3);  // straddles the huge page edge
    f.release_pages(f.data() + n - 10, 100);                  // runs past the end: ignored
    f.release_pages(f.data() - 4096, 10);                     // before the start: ignored
    EXPECT_EQ(std::memcmp(f.data(), bytes.data(), n), 0);
  }
  std::filesystem::remove(path);
}

TEST(MappedFile, LargeFilesMapAtAHugePageBoundaryWithTheirBytes) {
  for (size_t n : {size_t{2} << 20, (size_t{5} << 20) + 123}) {
    const std::vector<char> bytes = random_bytes(n);
    const std::string path = write_file(std::to_string(n), bytes);
    {
      MappedFile f(path);
      ASSERT_EQ(f.size(), n);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(f.data()) % (size_t{2} << 20), 0u);
      EXPECT_EQ(std::memcmp(f.data(), bytes.data(), n), 0);
      const MappedFile moved(std::move(f));
      EXPECT_EQ(moved.size(), n);
      EXPECT_EQ(std::memcmp(moved.data(), bytes.data(), n), 0);
    }
    std::filesystem::remove(path);
  }
}

TEST(MappedFile, SmallAndEmptyFilesMap) {
  const std::vector<char> bytes = random_bytes(4097);
  const std::string path = write_file("small", bytes);
  const MappedFile f(path);
  ASSERT_EQ(f.size(), bytes.size());
  EXPECT_EQ(std::memcmp(f.data(), bytes.data(), bytes.size()), 0);
  std::filesystem::remove(path);
  const std::string empty = write_file("empty", {});
  EXPECT_EQ(MappedFile(empty).size(), 0u);
  std::filesystem::remove(empty);
}

TEST(MappedFile, MissingFilesAndDirectoriesAreNamedInTheError) {
  try {
    MappedFile("/nonexistent/gemmax.gguf");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/gemmax.gguf"), std::string::npos);
  }
  EXPECT_THROW(MappedFile(std::filesystem::temp_directory_path().string()), std::runtime_error);
}

}  // namespace
}  // namespace gemmax
