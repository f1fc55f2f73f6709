// matmul (both dispatch paths, with and without a pool) against matmul_reference (dequantize a row,
// dot product in double) on random weights of every format.
//
// Tolerances: see matmul_check.h.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/dequantize.h"
#include "kernels/matmul_internal.h"
#include "kernels/thread_pool.h"
#include "kernels/weight_repack.h"
#include "matmul_check.h"
#include "random_weights.h"
#include "tensor/half.h"

namespace gemmax {
namespace {

using testing::random_weights;
using testing::random_x;
using testing::Weights;

std::vector<KernelPath> paths() {
  std::vector<KernelPath> p{KernelPath::kScalar};
  if (kernel_path_supported(KernelPath::kAvx2)) p.push_back(KernelPath::kAvx2);
  return p;
}

// Restores the process-wide path after each test.
class MatmulTest : public ::testing::TestWithParam<DType> {
 protected:
  void TearDown() override { set_kernel_path(saved_); }
  KernelPath saved_ = kernel_path();
};

void check_against_reference(DType t, int64_t rows, int64_t cols, int64_t n_tokens, KernelPath path,
                             ThreadPool* pool, std::mt19937& rng) {
  const Weights w = random_weights(t, rows, cols, rng);
  const std::vector<float> x = random_x(n_tokens * cols, rng);
  expect_matches_reference(w.view, x, n_tokens, path, pool);
}

TEST_P(MatmulTest, MatchesReferenceForAllShapesAndPaths) {
  const DType t = GetParam();
  std::mt19937 rng(1234 + static_cast<unsigned>(t));
  const int64_t block = require_layout(t).block_size;
  const int64_t cols = block == 1 ? 77 : (block == 32 ? 160 : 768);  // 77: odd tails for f32 types
  ThreadPool pool(3);
  for (KernelPath path : paths()) {
    for (int64_t n_tokens : {1, 3, 17, 64}) {
      for (int64_t rows : {1, 7, 33}) {
        check_against_reference(t, rows, cols, n_tokens, path, nullptr, rng);
        check_against_reference(t, rows, cols, n_tokens, path, &pool, rng);
      }
    }
  }
}

// Activations that int8 represents exactly (integers in [-127, 127] with 127 in every block, so the
// scale is exactly 1): the integer kernels must then agree with the reference to f32 rounding.
TEST_P(MatmulTest, ExactInt8ActivationsLeaveOnlyRoundingError) {
  const DType t = GetParam();
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(99);
  const int64_t cols = require_layout(t).block_size == 256 ? 512 : 256, n_tokens = 2;
  std::uniform_int_distribution<int> q(-127, 127);
  std::vector<float> x(static_cast<size_t>(n_tokens * cols));
  for (size_t i = 0; i < x.size(); ++i) x[i] = i % 32 == 5 ? 127.0f : static_cast<float>(q(rng));
  // act_block 0 makes the bound 1e-5 * S only.
  const Weights w = random_weights(t, 9, cols, rng);
  std::vector<float> ref(static_cast<size_t>(n_tokens * 9)), got(ref.size());
  matmul_reference(x.data(), n_tokens, w.view, ref.data());
  set_kernel_path(KernelPath::kAvx2);
  matmul(x.data(), n_tokens, w.view, got.data(), nullptr);
  std::vector<float> wrow(static_cast<size_t>(cols));
  for (int64_t o = 0; o < 9; ++o) {
    dequantize_row(t, w.view.row(o), wrow.data(), cols);
    for (int64_t tok = 0; tok < n_tokens; ++tok) {
      const Bounds b = bounds_for(x.data() + tok * cols, wrow.data(), cols, 0);
      EXPECT_LE(std::fabs(got[tok * 9 + o] - ref[tok * 9 + o]), 1e-5 * b.abs_sum + 1e-30)
          << dtype_name(t) << " o=" << o << " t=" << tok;
    }
  }
}

// Rows are computed independently, so splitting them over threads must not change a single bit.
TEST_P(MatmulTest, PoolDoesNotChangeResults) {
  const DType t = GetParam();
  std::mt19937 rng(7);
  const int64_t cols = require_layout(t).block_size == 256 ? 512 : 128;
  const Weights w = random_weights(t, 301, cols, rng);
  const std::vector<float> x = random_x(5 * cols, rng);
  ThreadPool pool(4);
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    std::vector<float> a(5 * 301), b(5 * 301);
    matmul(x.data(), 5, w.view, a.data(), nullptr);
    matmul(x.data(), 5, w.view, b.data(), &pool);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
        << kernel_path_name(path);
  }
}

// A token's result must not depend on the other tokens of the call (prefill tiles of 4, leftover
// tokens, L1 token blocks): the server promises identical greedy output alone or in a batch. 37
// tokens on 301 rows cover several token blocks and a leftover; each must equal that token alone,
// bit for bit.
// Each of the n tokens of x through w in one call must equal that token alone, bit for bit.
void expect_tokens_match_alone(const TensorView& w, const std::vector<float>& x, int64_t n,
                               ThreadPool* pool, const std::string& what) {
  const int64_t rows = w.rows(), cols = w.cols();
  std::vector<float> batch(n * rows), alone(rows);
  matmul(x.data(), n, w, batch.data(), pool);
  for (int64_t tok = 0; tok < n; ++tok) {
    matmul(x.data() + tok * cols, 1, w, alone.data(), pool);
    EXPECT_EQ(0, std::memcmp(alone.data(), batch.data() + tok * rows, rows * sizeof(float)))
        << what << " token " << tok;
  }
}

TEST_P(MatmulTest, TokensDoNotDependOnTheirBatch) {
  const DType t = GetParam();
  std::mt19937 rng(8);
  const int64_t cols = require_layout(t).block_size == 256 ? 1024 : 640, n = 37, rows = 301;
  const Weights w = random_weights(t, rows, cols, rng);
  const std::vector<float> x = random_x(n * cols, rng);
  ThreadPool pool(2);
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    expect_tokens_match_alone(w.view, x, n, &pool, kernel_path_name(path));
  }
}

// F16/BF16 rows of several lengths, on both sides of the one-chain / two-chain switch at 1024
// (odd group counts, scalar tails; 640 and 1152 are the 270M and 1B hidden sizes) and rows a
// prefill cuts into passes: a token's
// result in a prefill tile equals its GEMV alone, bit for bit, and the reference within tolerance.
TEST(Matmul, HalfPrecisionRowsDoNotDependOnTheirBatch) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  const KernelPath saved = kernel_path();
  set_kernel_path(KernelPath::kAvx2);
  std::mt19937 rng(17);
  ThreadPool pool(2);
  // Both sides of each switch to two chains: row length 1024, and 65536 rows (the LM head); and
  // BF16 rows long enough for a prefill to cut them into passes of whole spans (three passes of
  // 2048, 2048 and 4 elements). 41 tokens take the panel prefill (matmul_panels_avx2.cc) where the
  // row length allows it: 41 rows leave a partial row block, 41 tokens a partial tile, 4112
  // elements three pair spans (2048, 2048, 16) and a partial token block.
  const std::pair<int64_t, int64_t> shapes[] = {{5, 77},         {5, 640},  {5, 1035},
                                                {5, 1152},       {41, 640}, {41, 1152},
                                                {65536 + 3, 40}, {5, 4100}, {41, 4112}};
  for (const auto& [rows, cols] : shapes) {
    for (const int64_t n : {13, 41}) {
      for (DType t : {DType::kBF16, DType::kF16}) {
        if (rows > 65536 && n > 13) continue;  // the LM head's shape once is enough
        const Weights w = random_weights(t, rows, cols, rng);
        const std::vector<float> x = random_x(n * cols, rng);
        const std::string what = std::string(dtype_name(t)) + " " + std::to_string(rows) + "x" +
                                 std::to_string(cols) + ", " + std::to_string(n) + " tokens";
        expect_tokens_match_alone(w.view, x, n, &pool, what);
        expect_matches_reference(w.view, x, n, KernelPath::kAvx2, &pool);
      }
    }
  }
  set_kernel_path(saved);
}

// The panel prefill on each microkernel this CPU can run (AVX2's 16 rows, AVX-512's 32) against
// the row kernel's GEMV, token by token, bit for bit: 45 rows leave a partial block on both, 70
// tokens a partial tile and a second, partial block of tiles. BF16: 4112 elements are three pair
// spans, 640 the one-chain scheme; F16: 640 and 1008 the one-chain scheme, 1152 and 4112 the two
// chains over groups of 8. A CPU without AVX-512 tests only the AVX2 microkernel.
TEST(Matmul, PanelPrefillEqualsTheRowKernelOnEveryMicrokernel) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(29);
  const int64_t rows = 45, n = 70;
  const std::tuple<DType, int64_t, detail::PanelScheme> cases[] = {
      {DType::kBF16, 640, detail::PanelScheme::kChain8},
      {DType::kBF16, 4112, detail::PanelScheme::kPairs16},
      {DType::kF16, 640, detail::PanelScheme::kChain8},
      {DType::kF16, 1008, detail::PanelScheme::kChain8},
      {DType::kF16, 1152, detail::PanelScheme::kGroups16},
      {DType::kF16, 4112, detail::PanelScheme::kGroups16}};
  for (const auto& [type, cols, scheme] : cases) {
    const Weights w = random_weights(type, rows, cols, rng);
    const std::vector<float> x = random_x(n * cols, rng);
    // The f32 kernels (the vdpbf16ps ones have their own test below).
    const detail::RowKernel kn =
        detail::avx2_row_kernel(type, cols, rows, cpu_features().has_avx512_vnni(), false);
    const std::string what = std::string(dtype_name(type)) + " " + std::to_string(cols);
    ASSERT_EQ(kn.panel, scheme) << what;
    ASSERT_EQ(kn.panel_f16, type == DType::kF16) << what;
    ASSERT_TRUE(detail::panel_supported(kn.panel, cols)) << what;
    const auto* wb = reinterpret_cast<const uint8_t*>(w.view.data);
    const size_t row_bytes = static_cast<size_t>(w.view.row_bytes());
    std::vector<float> want(n * rows);
    std::vector<uint8_t> act(detail::act_row_bytes(kn.act, cols));
    for (int64_t t = 0; t < n; ++t) {
      detail::quantize_act_row(kn.act, x.data() + t * cols, cols, act.data());
      kn.rows(wb, row_bytes, rows, act.data(), cols, want.data() + t * rows);
    }
    for (const bool wide : {false, true}) {
      if (wide && !cpu_features().avx512f) continue;
      const int tile = detail::panel_tile_tokens(wide);
      std::vector<float> xp(detail::panel_act_floats(kn.panel, n, cols, tile));
      const size_t tile_floats = detail::panel_tile_floats(kn.panel, tile, cols);
      for (int64_t t0 = 0; t0 < n; t0 += tile)
        detail::pack_panel_tile(kn.panel, tile, x.data() + t0 * cols, cols,
                                static_cast<int>(std::min<int64_t>(tile, n - t0)),
                                xp.data() + t0 / tile * tile_floats);
      std::vector<float> got(n * rows, -1.0f);
      detail::panel_rows(kn.panel, wide, kn.panel_f16, wb, row_bytes, rows, xp.data(), n, cols,
                         got.data(), static_cast<size_t>(rows));
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
          << what << " columns, " << (wide ? "AVX-512" : "AVX2");
    }
  }
}

// BF16 by vdpbf16ps (AVX512-BF16 CPUs): the GEMV (45 rows: four streams and a leftover row) and
// the panel prefill through matmul (2 tokens; 19 tokens: two full tiles and a partial one; 45 rows
// leave a partial row block) against the row dot of each token alone, bit for bit. 640, 1152 and
// 2080 (65 steps) elements.
TEST(Matmul, Bf16DotKernelsGiveTheSameBits) {
  if (!cpu_features().has_avx512_bf16()) GTEST_SKIP() << "no AVX512-BF16";
  const KernelPath saved = kernel_path();
  set_kernel_path(KernelPath::kAvx2);
  std::mt19937 rng(41);
  ThreadPool pool(2);
  const int64_t rows = 45;
  for (const int64_t cols : {640, 1152, 2080}) {
    const Weights w = random_weights(DType::kBF16, rows, cols, rng);
    const detail::RowKernel kn = detail::avx2_row_kernel(DType::kBF16, cols, rows);
    ASSERT_EQ(kn.act, detail::ActFormat::kBF16) << cols;
    ASSERT_EQ(kn.panel, detail::PanelScheme::kDot32) << cols;
    const auto* wb = reinterpret_cast<const uint8_t*>(w.view.data);
    const size_t row_bytes = static_cast<size_t>(w.view.row_bytes());
    for (const int64_t n : {2, 19}) {
      const std::vector<float> x = random_x(n * cols, rng);
      std::vector<float> want(n * rows), gemv(n * rows), got(n * rows, -1.0f);
      std::vector<uint8_t> act(detail::act_row_bytes(kn.act, cols));
      for (int64_t t = 0; t < n; ++t) {
        detail::quantize_act_row(kn.act, x.data() + t * cols, cols, act.data());
        for (int64_t r = 0; r < rows; ++r)
          want[t * rows + r] = kn.dot(wb + r * row_bytes, act.data(), cols);
        kn.rows(wb, row_bytes, rows, act.data(), cols, gemv.data() + t * rows);
      }
      matmul(x.data(), n, w.view, got.data(), &pool);
      const std::string what = std::to_string(cols) + " columns, " + std::to_string(n) + " tokens";
      EXPECT_EQ(0, std::memcmp(want.data(), gemv.data(), want.size() * sizeof(float))) << what;
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float))) << what;
      expect_matches_reference(w.view, x, n, KernelPath::kAvx2, &pool);
    }
  }
  set_kernel_path(saved);
}

// The quad formats' VNNI tiles against their AVX2 tiles, GEMV and 8-token tile, bit for bit: the
// int32 sums are exact either way (skipped without AVX512-VNNI).
TEST(Matmul, VnniQuadTilesEqualAvx2Tiles) {
  if (!cpu_features().has_avx512_vnni()) GTEST_SKIP() << "no AVX512-VNNI";
  std::mt19937 rng(31);
  const int64_t rows = 19, n = 8;
  for (DType t : {DType::kQ4_0, DType::kQ5_0, DType::kQ8_0, DType::kQ5_0x4}) {
    // 38 blocks end in a partial quad; Q5_0x4 needs whole quads (40 blocks).
    const int64_t cols = t == DType::kQ5_0x4 ? 1280 : 1216;
    const DType stored = t == DType::kQ5_0x4 ? DType::kQ5_0 : t;
    const Weights w = random_weights(stored, rows, cols, rng);
    TensorView view = w.view;
    std::vector<std::byte> copy;
    if (t == DType::kQ5_0x4) {
      copy.resize(repacked_bytes(view));
      view = repack_weight(view, copy.data(), nullptr);
    }
    const auto* wb = reinterpret_cast<const uint8_t*>(view.data);
    const size_t row_bytes = static_cast<size_t>(view.row_bytes());
    const std::vector<float> x = random_x(n * cols, rng);
    std::vector<float> out[2];
    for (const bool vnni : {false, true}) {
      const detail::RowKernel kn = detail::avx2_row_kernel(t, cols, rows, vnni);
      const size_t stride = detail::act_row_bytes(kn.act, cols);
      std::vector<uint8_t> act(stride * n);
      for (int64_t i = 0; i < n; ++i)
        detail::quantize_act_row(kn.act, x.data() + i * cols, cols, act.data() + i * stride);
      std::vector<float>& y = out[vnni ? 1 : 0];
      y.assign(2 * n * rows, 0.0f);
      kn.rows(wb, row_bytes, rows, act.data(), cols, y.data());  // GEMV of token 0
      for (int64_t r = 0; r < rows; ++r)                         // 8-token tiles, row by row
        kn.tokens_1row(wb + r * row_bytes, row_bytes, act.data(), stride, cols,
                       y.data() + n * rows + r, static_cast<size_t>(rows));
    }
    EXPECT_EQ(0, std::memcmp(out[0].data(), out[1].data(), out[0].size() * sizeof(float)))
        << dtype_name(t);
  }
}

// Weights at the integer sums' extremes: every quant and 6-bit scale at its maximum (all bits
// set), Q8_0 quants and Q6_K scales at -128; the f16 scales stay random.
void make_extreme(DType t, Weights& w) {
  const DTypeLayout layout = require_layout(t);
  const std::vector<int> f16_fields = testing::scale_fields(t);
  for (size_t blk = 0; blk < w.bytes.size() / layout.block_bytes; ++blk)
    for (int i = 0; i < static_cast<int>(layout.block_bytes); ++i) {
      if (std::find(f16_fields.begin(), f16_fields.end(), i & ~1) != f16_fields.end()) continue;
      const bool minus128 = (t == DType::kQ6_K && i >= 192 && i < 208) || t == DType::kQ8_0;
      w.bytes[blk * layout.block_bytes + i] = minus128 ? std::byte{0x80} : std::byte{0xff};
    }
}

// The integer formats' kernels against the single-token dot, bit for bit: the GEMV (for K
// formats in 8-row groups, with a leftover row, and rows longer than its 48-block chunk), the
// 8-token tile and, with AVX512-VNNI, the packed-panel prefill (a partial 16-row block, partial
// 8-token tiles, a partial last quad of blocks). Random blocks, and blocks at the integer sums'
// extremes with activations all +-127 after quantization, which must also match the reference.
TEST(Matmul, IntegerKernelsGiveTheSameBits) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(37);
  const int64_t n = 19;
  for (const DType t : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ4_0, DType::kQ5_0,
                        DType::kQ8_0, DType::kQ5_0x4}) {
    const bool k_format = require_layout(t).block_size == 256;
    // K rows of 3 and 50 blocks; the others end in a partial quad (38 blocks) except Q5_0x4.
    // 4096-wide Q4_0 rows (whole quads) take the VBMI GEMV where the CPU has AVX512-VBMI.
    const std::vector<int64_t> widths =
        k_format ? std::vector<int64_t>{768, 12800}
                 : std::vector<int64_t>{t == DType::kQ5_0x4 ? 1280 : 1216, 4096};
    for (const int64_t cols : widths) {
      for (const bool extreme : {false, true}) {
        const int64_t rows = cols > 4096 ? 9 : 37;
        const DType stored = t == DType::kQ5_0x4 ? DType::kQ5_0 : t;
        Weights w = random_weights(stored, rows, cols, rng);
        if (extreme) make_extreme(stored, w);
        TensorView view = w.view;
        std::vector<std::byte> copy;
        if (t == DType::kQ5_0x4) {
          copy.resize(repacked_bytes(view));
          view = repack_weight(view, copy.data(), nullptr);
        }
        std::vector<float> x = random_x(n * cols, rng);
        if (extreme)
          for (int64_t i = 0; i < n * cols; ++i) x[i] = (i / cols) % 2 == 0 ? 1.0f : -1.0f;
        const std::string what = std::string(dtype_name(t)) + " " + std::to_string(cols) +
                                 (extreme ? " extreme" : " random");
        const detail::RowKernel kn = detail::avx2_row_kernel(t, cols, rows);
        const auto* wb = reinterpret_cast<const uint8_t*>(view.data);
        const size_t row_bytes = static_cast<size_t>(view.row_bytes());
        const size_t stride = detail::act_row_bytes(kn.act, cols);
        std::vector<uint8_t> act(stride * n);
        for (int64_t i = 0; i < n; ++i)
          detail::quantize_act_row(kn.act, x.data() + i * cols, cols, act.data() + i * stride);
        std::vector<float> want(n * rows), gemv(n * rows), tile(8 * rows);
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t r = 0; r < rows; ++r)
            want[i * rows + r] = kn.dot(wb + r * row_bytes, act.data() + i * stride, cols);
          kn.rows(wb, row_bytes, rows, act.data() + i * stride, cols, gemv.data() + i * rows);
        }
        for (int64_t r = 0; r < rows; ++r)
          kn.tokens_1row(wb + r * row_bytes, row_bytes, act.data(), stride, cols, tile.data() + r,
                         static_cast<size_t>(rows));
        EXPECT_EQ(0, std::memcmp(want.data(), gemv.data(), want.size() * sizeof(float))) << what;
        EXPECT_EQ(0, std::memcmp(want.data(), tile.data(), tile.size() * sizeof(float))) << what;
        if (cpu_features().has_avx512_vnni()) {
          ASSERT_NE(kn.kpanel, nullptr) << what;
          std::vector<float> panel(n * rows, -1.0f);
          kn.kpanel(wb, row_bytes, rows, act.data(), stride, n, cols, panel.data(),
                    static_cast<size_t>(rows));
          EXPECT_EQ(0, std::memcmp(want.data(), panel.data(), want.size() * sizeof(float))) << what;
        }
        if (extreme) {
          std::vector<float> ref(n * rows);
          matmul_reference(x.data(), n, view, ref.data());
          for (size_t i = 0; i < ref.size(); ++i)
            EXPECT_NEAR(want[i], ref[i], 1e-5 * std::fabs(ref[i])) << what << " at " << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, MatmulTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ4_0,
                                           DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0,
                                           DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K,
                                           DType::kQ6_K, DType::kQ5_0x4),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// q/k/v and gate/up go through matmul_fused: formats with different activation layouts (f32,
// int8 per 32, int8 per 256) share one call, and each output must equal matmul() of its weight
// alone bit for bit, with and without a pool, for a decode token and a prefill tile.
TEST(Matmul, FusedEqualsSeparateProducts) {
  std::mt19937 rng(11);
  const int64_t cols = 256;
  const DType types[] = {DType::kQ5_0, DType::kQ8_0, DType::kQ4_K, DType::kF32};
  const int64_t rows[] = {70, 33, 129, 17};
  std::vector<Weights> ws;
  for (int i = 0; i < 4; ++i) ws.push_back(random_weights(types[i], rows[i], cols, rng));
  ThreadPool pool(3);
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    for (int64_t n : {1, 6}) {
      const std::vector<float> x = random_x(n * cols, rng);
      std::vector<std::vector<float>> fused(4), alone(4);
      std::vector<MatmulOutput> outs;
      for (int i = 0; i < 4; ++i) {
        fused[i].assign(n * rows[i], -1.0f);
        alone[i].assign(n * rows[i], -2.0f);
        outs.push_back({&ws[i].view, fused[i].data()});
        matmul(x.data(), n, ws[i].view, alone[i].data(), nullptr);
      }
      for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        matmul_fused(x.data(), n, outs, p);
        for (int i = 0; i < 4; ++i)
          EXPECT_EQ(0, std::memcmp(fused[i].data(), alone[i].data(), fused[i].size() * 4))
              << kernel_path_name(path) << " output " << i << " tokens " << n;
      }
    }
  }
}

// A decode step's fused GEMV over enough rows for its big-then-small chunks (decode_chunk_start
// in matmul.cc), on 2 and 3 threads: every row written, each bit for bit as without a pool.
TEST(Matmul, DecodeChunksCoverEveryRowOnce) {
  std::mt19937 rng(13);
  const int64_t cols = 256;
  const DType types[] = {DType::kQ4_0, DType::kQ4_K, DType::kQ8_0};
  const int64_t rows[] = {700, 333, 101};  // 1134 rows: 71 units of 16, the last one partial
  std::vector<Weights> ws;
  for (int i = 0; i < 3; ++i) ws.push_back(random_weights(types[i], rows[i], cols, rng));
  const std::vector<float> x = random_x(cols, rng);
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    for (int threads : {2, 3}) {
      ThreadPool pool(threads);
      std::vector<std::vector<float>> fused(3), alone(3);
      std::vector<MatmulOutput> outs;
      for (int i = 0; i < 3; ++i) {
        fused[i].assign(rows[i], std::nanf(""));
        alone[i].assign(rows[i], -2.0f);
        outs.push_back({&ws[i].view, fused[i].data()});
        matmul(x.data(), 1, ws[i].view, alone[i].data(), nullptr);
      }
      matmul_fused(x.data(), 1, outs, &pool);
      for (int i = 0; i < 3; ++i)
        EXPECT_EQ(0, std::memcmp(fused[i].data(), alone[i].data(), fused[i].size() * 4))
            << kernel_path_name(path) << " output " << i << ", " << threads << " threads";
    }
  }
}

TEST(Matmul, FusedRejectsMismatchedColumnsAndTooManyOutputs) {
  std::mt19937 rng(12);
  const Weights a = random_weights(DType::kQ8_0, 4, 64, rng),
                b = random_weights(DType::kQ8_0, 4, 96, rng);
  std::vector<float> x(96, 1.0f), y(16);
  const MatmulOutput mismatched[] = {{&a.view, y.data()}, {&b.view, y.data()}};
  EXPECT_THROW(matmul_fused(x.data(), 1, mismatched, nullptr), std::invalid_argument);
  const MatmulOutput five[] = {{&a.view, y.data()},
                               {&a.view, y.data()},
                               {&a.view, y.data()},
                               {&a.view, y.data()},
                               {&a.view, y.data()}};
  EXPECT_THROW(matmul_fused(x.data(), 1, five, nullptr), std::invalid_argument);
}

// The AVX2 activation quantization against the plain rule it implements, bit for bit: d =
// max|x| / 127 (NaN ignored), q = round-to-even(x / d) clamped to [-127, 127] with NaN -> -127,
// plus the per-block sums the *_1 and K kernels use. Blocks of zeros, NaN, inf and huge values.
TEST(Matmul, ActivationQuantizationMatchesPlainRule) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(13);
  const int64_t k = 512;
  std::vector<float> x = random_x(k, rng);
  for (int i = 32; i < 64; ++i) x[i] = 0.0f;
  x[70] = NAN;
  x[100] = INFINITY;
  for (int i = 128; i < 160; ++i) x[i] *= 1e30f;
  x[300] = -x[300] * 1000.0f;
  auto plain = [](const float* v, int n, std::vector<int>& q) {
    float amax = 0.0f;
    for (int i = 0; i < n; ++i)
      if (std::fabs(v[i]) > amax) amax = std::fabs(v[i]);
    const float d = amax / 127.0f, inv = d > 0.0f ? 1.0f / d : 0.0f;
    q.resize(n);
    for (int i = 0; i < n; ++i) {
      float y = v[i] * inv;
      y = !(y >= -127.0f) ? -127.0f : (y > 127.0f ? 127.0f : y);
      q[i] = static_cast<int>(std::nearbyint(y));
    }
    return d;
  };
  std::vector<uint8_t> buf(detail::act_row_bytes(detail::ActFormat::kA8x32, k));
  detail::quantize_act_row(detail::ActFormat::kA8x32, x.data(), k, buf.data());
  const auto* b32 = reinterpret_cast<const detail::A8Block32*>(buf.data());
  std::vector<int> q;
  for (int b = 0; b < k / 32; ++b) {
    const float d = plain(x.data() + 32 * b, 32, q);
    EXPECT_EQ(b32[b].d, d) << b;
    int sum = 0;
    for (int i = 0; i < 32; ++i) {
      EXPECT_EQ(b32[b].q[i], q[i]) << b << " " << i;
      sum += q[i];
    }
    EXPECT_EQ(b32[b].sum, d * static_cast<float>(sum)) << b;
  }
  buf.assign(detail::act_row_bytes(detail::ActFormat::kA8x256, k), 0);
  detail::quantize_act_row(detail::ActFormat::kA8x256, x.data(), k, buf.data());
  const auto* b256 = reinterpret_cast<const detail::A8Block256*>(buf.data());
  for (int b = 0; b < k / 256; ++b) {
    EXPECT_EQ(b256[b].d, plain(x.data() + 256 * b, 256, q)) << b;
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) {
        EXPECT_EQ(b256[b].q[16 * g + i], q[16 * g + i]) << b << " " << g << " " << i;
        sum += q[16 * g + i];
      }
      EXPECT_EQ(b256[b].bsums[g], sum) << b << " " << g;
    }
  }
}

// The A8Quad layout (Q4_0/Q5_0/Q8_0 activations): element e of block m of quad g at q[e / 8][8m + e
// % 8], d of block m in lanes 2m and 2m + 1, sums16 = 16 x the sum of each lane's 16 values,
// missing blocks of a last partial quad zero. Then the kernels must equal the exact sum over blocks
// of (weight d * activation d * integer dot) of those quantized activations, up to f32 rounding,
// for rows of full and partial quads (4..7 blocks).
TEST(Matmul, QuadActivationsLayoutAndExactKernels) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(21);
  for (int64_t nb = 4; nb <= 7; ++nb) {
    const int64_t k = 32 * nb;
    const std::vector<float> x = random_x(k, rng);
    std::vector<uint8_t> buf(detail::act_row_bytes(detail::ActFormat::kA8Quad, k));
    ASSERT_EQ(buf.size(), static_cast<size_t>((nb + 3) / 4) * sizeof(detail::A8Quad));
    detail::quantize_act_row(detail::ActFormat::kA8Quad, x.data(), k, buf.data());
    const auto* quads = reinterpret_cast<const detail::A8Quad*>(buf.data());
    auto q_of = [&](int64_t blk, int e) { return quads[blk / 4].q[e / 8][8 * (blk % 4) + e % 8]; };
    auto d_of = [&](int64_t blk) { return quads[blk / 4].d[2 * (blk % 4)]; };
    for (int64_t g = 0; g < (nb + 3) / 4; ++g) {
      for (int l = 0; l < 8; ++l) {
        const int64_t blk = 4 * g + l / 2;
        EXPECT_EQ(quads[g].d[l], blk < nb ? d_of(blk) : 0.0f) << nb << " " << g << " " << l;
        int sum = 0;
        for (int j = 0; j < 4; ++j)
          for (int i = 0; i < 4; ++i) sum += quads[g].q[j][4 * l + i];
        EXPECT_EQ(quads[g].sums16[l], 16 * sum);
      }
    }
    for (int64_t blk = 0; blk < 4 * ((nb + 3) / 4); ++blk) {
      float amax = 0.0f;
      for (int e = 0; blk < nb && e < 32; ++e) amax = std::max(amax, std::fabs(x[blk * 32 + e]));
      for (int e = 0; e < 32; ++e) {
        const float want = blk < nb ? x[blk * 32 + e] : 0.0f;
        EXPECT_LE(std::fabs(q_of(blk, e) * d_of(blk) - want), amax / 254.0f * 1.01f + 1e-30f)
            << "nb " << nb << " block " << blk << " element " << e;
      }
    }
    for (DType t : {DType::kQ4_0, DType::kQ5_0, DType::kQ8_0}) {
      const Weights w = random_weights(t, 3, k, rng);
      const detail::RowKernel kn = detail::avx2_row_kernel(t, k, 3);
      ASSERT_EQ(kn.act, detail::ActFormat::kA8Quad);
      std::vector<float> wf(static_cast<size_t>(k));
      for (int64_t r = 0; r < 3; ++r) {
        dequantize_row(t, w.view.row(r), wf.data(), k);
        double exact = 0.0, abs_sum = 0.0;
        for (int64_t blk = 0; blk < nb; ++blk)
          for (int e = 0; e < 32; ++e) {
            const double p = static_cast<double>(wf[blk * 32 + e]) * q_of(blk, e) * d_of(blk);
            exact += p;
            abs_sum += std::fabs(p);
          }
        const float got = kn.dot(reinterpret_cast<const uint8_t*>(w.view.row(r)), buf.data(), k);
        EXPECT_LE(std::fabs(got - exact), 1e-5 * abs_sum) << dtype_name(t) << " nb " << nb;
      }
    }
  }
}

TEST(Matmul, ReferenceOnHandComputedF32) {
  // W = [[1, 2], [3, 4], [5, 6]], x = [[1, -1], [0.5, 2]].
  const float wdata[] = {1, 2, 3, 4, 5, 6};
  TensorView w{"w", DType::kF32, {3, 2}, reinterpret_cast<const std::byte*>(wdata), sizeof wdata};
  const float x[] = {1, -1, 0.5f, 2};
  float y[6];
  matmul_reference(x, 2, w, y);
  const float want[] = {-1, -1, -1, 4.5f, 9.5f, 14.5f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y[i], want[i]) << i;
  matmul(x, 2, w, y, nullptr);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y[i], want[i]) << i;
}

TEST(Matmul, RejectsMalformedOperandsNamingTheTensor) {
  std::vector<std::byte> bytes(34 * 4);
  TensorView w{"blk.0.ffn_up.weight", DType::kQ8_0, {4, 32}, bytes.data(), bytes.size() - 1};
  std::vector<float> x(64), y(8);
  try {
    matmul(x.data(), 1, w, y.data(), nullptr);
    FAIL() << "short buffer accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_up.weight"), std::string::npos) << e.what();
  }
  w.nbytes = bytes.size();
  w.shape = {4, 33};  // not a whole number of blocks
  EXPECT_THROW(matmul(x.data(), 1, w, y.data(), nullptr), std::runtime_error);
  w.shape = {4, 32};
  w.dtype = DType::kQ8_1;  // known layout, no kernel
  EXPECT_THROW(matmul(x.data(), 1, w, y.data(), nullptr), std::runtime_error);
  w.dtype = DType::kQ8_0;
  EXPECT_THROW(matmul(x.data(), -1, w, y.data(), nullptr), std::invalid_argument);
  EXPECT_THROW(matmul(nullptr, 1, w, y.data(), nullptr), std::invalid_argument);
  EXPECT_THROW(
      matmul_reference(x.data(), 1, TensorView{"bad", DType::kF32, {2, -3}, nullptr, 0}, y.data()),
      std::invalid_argument);
}

TEST(Matmul, EmptyShapesAreNoOps) {
  TensorView w{"empty", DType::kQ4_K, {0, 256}, nullptr, 0};
  float y = 42.0f;
  matmul(nullptr, 0, w, &y, nullptr);
  matmul(nullptr, 3, w, &y, nullptr);  // no rows: nothing written, x never read
  EXPECT_EQ(y, 42.0f);
}

// dot_f32 on both paths against a double sum; lengths cover the 32-wide AVX2 body, the 8-wide loop
// and scalar tails. Bound: f32 partial sums of k <= 300 products, |err| <= 1e-5 * sum |a_i b_i|.
TEST(Matmul, DotF32MatchesDoubleOnBothPaths) {
  const KernelPath saved = kernel_path();
  std::mt19937 rng(5);
  for (KernelPath path : paths()) {
    set_kernel_path(path);
    for (int64_t n : {0, 1, 7, 8, 31, 32, 33, 256, 300}) {
      const std::vector<float> a = random_x(n, rng), b = random_x(n, rng);
      double want = 0.0, abs_sum = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        want += static_cast<double>(a[i]) * b[i];
        abs_sum += std::fabs(static_cast<double>(a[i]) * b[i]);
      }
      EXPECT_LE(std::fabs(dot_f32(a.data(), b.data(), n) - want), 1e-5 * abs_sum + 1e-30)
          << kernel_path_name(path) << " n=" << n;
    }
  }
  set_kernel_path(saved);
}

TEST(Matmul, KernelPathCanBeForced) {
  const KernelPath saved = kernel_path();
  set_kernel_path(KernelPath::kScalar);
  EXPECT_EQ(kernel_path(), KernelPath::kScalar);
  EXPECT_STREQ(kernel_path_name(KernelPath::kScalar), "scalar");
  if (kernel_path_supported(KernelPath::kAvx2)) {
    set_kernel_path(KernelPath::kAvx2);
    EXPECT_EQ(kernel_path(), KernelPath::kAvx2);
  } else {
    EXPECT_THROW(set_kernel_path(KernelPath::kAvx2), std::runtime_error);
  }
  set_kernel_path(saved);
}

}  // namespace
}  // namespace gemmax
