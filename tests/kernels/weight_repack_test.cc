// Load-time repacking of Q5_0 (kernels/weight_repack.h): the quad layout as documented in
// quant_blocks.h, checked element by element against the stored blocks; the round trip; and matmul
// / dequantize of a repacked weight bit-identical to the stored one on every kernel path.
#include "kernels/weight_repack.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernel_paths.h"
#include "kernels/dequantize.h"
#include "kernels/matmul.h"
#include "kernels/quant_blocks.h"
#include "random_weights.h"
#include "tensor/half.h"

namespace gemmax {
namespace {

using testing::Weights;

// Random Q5_0 rows (random nibbles and fifth bits, f16 scales of either sign in [1e-3, 1]).
Weights random_stored(int64_t rows, int64_t cols, std::mt19937& rng) {
  return testing::random_weights(DType::kQ5_0, rows, cols, rng);
}

Weights repack(const TensorView& w, ThreadPool* pool = nullptr) {
  Weights r;
  r.bytes.resize(repacked_bytes(w));
  r.view = repack_weight(w, r.bytes.data(), pool);
  return r;
}

// The 5-bit code of element e of a stored Q5_0 block.
int stored_code(const uint8_t* block, int e) {
  const int qs = quant::q5_0::kQs;
  const int nibble = e < 16 ? block[qs + e] & 0x0f : block[qs + e - 16] >> 4;
  return nibble | static_cast<int>((quant::load_u32(block + quant::q5_0::kQh) >> e) & 1u) << 4;
}

// The same element read from a quad by the layout comment of quant_blocks.h.
int quad_code(const uint8_t* quad, int m, int e) {
  const int j = e / 8, i = e % 8, half = j % 2 == 0 ? 0 : 32, shift = j >= 2 ? 4 : 0;
  const int nibble = (quad[quant::q5_0x4::kQs + half + 8 * m + i] >> shift) & 0x0f;
  const int p = 8 * (m % 2) + i, bit = j + (m >= 2 ? 4 : 0);
  return nibble | ((quad[quant::q5_0x4::kQh + p] >> bit) & 1) << 4;
}

TEST(WeightRepack, QuadLayoutIsTheDocumentedOne) {
  std::mt19937 rng(5);
  const Weights s = random_stored(3, 256, rng);
  const Weights r = repack(s.view);
  ASSERT_EQ(r.view.dtype, DType::kQ5_0x4);
  const int64_t block_bytes = quant::q5_0::kBytes, d_at = quant::q5_0x4::kD;
  const int64_t quad_bytes = require_layout(r.view.dtype).block_bytes;
  ASSERT_EQ(quad_bytes, 4 * block_bytes);
  for (int64_t q = 0; q < static_cast<int64_t>(s.bytes.size()) / quad_bytes; ++q) {
    const auto* quad = reinterpret_cast<const uint8_t*>(r.bytes.data()) + q * quad_bytes;
    for (int m = 0; m < 4; ++m) {
      const auto* block =
          reinterpret_cast<const uint8_t*>(s.bytes.data()) + (4 * q + m) * block_bytes;
      EXPECT_EQ(quant::load_u16(quad + d_at + 2 * m), quant::load_u16(block)) << "quad " << q;
      for (int e = 0; e < quant::kQK; ++e)
        ASSERT_EQ(quad_code(quad, m, e), stored_code(block, e))
            << "quad " << q << " block " << m << " element " << e;
    }
  }
}

TEST(WeightRepack, DeinterleaveRestoresTheBlocks) {
  std::mt19937 rng(6);
  const Weights s = random_stored(5, 640, rng);
  const Weights r = repack(s.view);
  std::vector<uint8_t> back(s.bytes.size());
  for (size_t at = 0; at < back.size(); at += quant::q5_0x4::kBytes)
    quant::deinterleave_quad_q5_0(reinterpret_cast<const uint8_t*>(r.bytes.data()) + at,
                                  back.data() + at);
  EXPECT_EQ(0, std::memcmp(back.data(), s.bytes.data(), back.size()));
}

TEST(WeightRepack, DequantizedRowsAreTheStoredOnes) {
  std::mt19937 rng(7);
  const int64_t cols = 384;
  const Weights s = random_stored(4, cols, rng);
  const Weights r = repack(s.view);
  std::vector<float> a(cols), b(cols);
  for (int64_t row = 0; row < 4; ++row) {
    dequantize_row(DType::kQ5_0, s.view.row(row), a.data(), cols);
    dequantize_row(r.view.dtype, r.view.row(row), b.data(), cols);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), cols * sizeof(float))) << "row " << row;
  }
}

// The whole point of the layout: the same products, bit for bit, on every path, for a GEMV
// (one token), the prefill tiles (8 tokens) with leftovers, and split over a pool.
TEST(WeightRepack, MatmulIsBitIdenticalToTheStoredWeight) {
  std::mt19937 rng(8);
  ThreadPool pool(2);
  PathGuard guard;
  for (int64_t cols : {128, 640, 2048})
    for (int64_t rows : {1, 7, 33}) {
      const Weights s = random_stored(rows, cols, rng);
      const Weights r = repack(s.view, &pool);
      for (int64_t n : {1, 3, 8, 17}) {
        const std::vector<float> x = testing::random_x(n * cols, rng);
        for (KernelPath path : paths()) {
          set_kernel_path(path);
          std::vector<float> want(n * rows), got(n * rows);
          matmul(x.data(), n, s.view, want.data(), &pool);
          matmul(x.data(), n, r.view, got.data(), n % 2 ? nullptr : &pool);
          EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
              << kernel_path_name(path) << " cols " << cols << " rows " << rows << " tokens " << n;
        }
      }
    }
}

TEST(WeightRepack, OnlyQ5_0RowsOfWholeQuads) {
  EXPECT_EQ(repacked_dtype(DType::kQ5_0, 640), DType::kQ5_0x4);
  EXPECT_EQ(repacked_dtype(DType::kQ5_0, 1152), DType::kQ5_0x4);  // 1B hidden size: 9 quads
  EXPECT_FALSE(repacked_dtype(DType::kQ5_0, 160));                // 5 blocks: not whole quads
  EXPECT_FALSE(repacked_dtype(DType::kQ5_0, 0));
  for (DType t : {DType::kF32, DType::kBF16, DType::kQ4_0, DType::kQ8_0, DType::kQ4_1, DType::kQ5_1,
                  DType::kQ4_K, DType::kQ6_K, DType::kQ5_0x4})
    EXPECT_FALSE(repacked_dtype(t, 1024)) << dtype_name(t);
  EXPECT_TRUE(dtype_is_repacked(DType::kQ5_0x4));
  EXPECT_FALSE(dtype_is_repacked(DType::kQ5_0));
}

TEST(WeightRepack, RejectsWhatItCannotRepackNamingTheTensor) {
  std::vector<std::byte> bytes(34 * 4);
  std::vector<std::byte> dst(bytes.size());
  const TensorView q8{"blk.3.attn_q.weight", DType::kQ8_0, {1, 128}, bytes.data(), bytes.size()};
  try {
    repack_weight(q8, dst.data(), nullptr);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("blk.3.attn_q.weight"), std::string::npos) << e.what();
  }
  const TensorView short_q5{"blk.4.attn_q.weight", DType::kQ5_0, {2, 128}, bytes.data(), 88};
  EXPECT_THROW(repack_weight(short_q5, dst.data(), nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace gemmax
