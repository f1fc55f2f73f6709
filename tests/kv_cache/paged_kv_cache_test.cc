#include "kv_cache/paged_kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kv_test_util.h"

namespace gemmax {
namespace {

using testing::kv_row;
using testing::read_rows;
using testing::small_params;
using testing::step;
using testing::store_step;

// Bytes of one kv head's K (or V) row.
int64_t head_row_bytes(const KVCacheParams& p) { return p.head_dim * p.element_bytes(); }

// Expects every K and V row of [begin, end) of every layer to read back as stored. `rel_tol` is the
// format's rounding bound relative to the value (0 for f32, which is copied bit for bit).
void expect_round_trip(const PagedKVCache& c, SeqId id, int64_t begin, int64_t end, float rel_tol) {
  const auto& p = c.params();
  for (int layer = 0; layer < p.num_layers; ++layer) {
    for (bool is_v : {false, true}) {
      const auto got = read_rows(c, id, layer, begin, end, is_v);
      const size_t row = static_cast<size_t>(p.n_kv_heads * p.head_dim);
      ASSERT_EQ(got.size(), static_cast<size_t>(end - begin) * row);
      for (int64_t pos = begin; pos < end; ++pos) {
        const auto want = kv_row(p, id, layer, pos, is_v);
        for (size_t i = 0; i < row; ++i) {
          const float g = got[static_cast<size_t>(pos - begin) * row + i];
          if (rel_tol == 0) {
            ASSERT_EQ(g, want[i]) << "layer " << layer << " pos " << pos << " i " << i;
          } else {
            ASSERT_LE(std::fabs(g - want[i]), std::fabs(want[i]) * rel_tol)
                << "layer " << layer << " pos " << pos << " i " << i << " v " << is_v;
          }
        }
      }
    }
  }
}

TEST(PagedKVCache, F32RoundTripIsExact) {
  PagedKVCache c(small_params(DType::kF32, {false, false}, 0), 64);
  const SeqId id = c.add_sequence();
  step(c, id, 7);                              // prefill, ends inside a page
  for (int i = 0; i < 6; ++i) step(c, id, 1);  // decode steps crossing page boundaries
  EXPECT_EQ(c.length(id), 13);
  expect_round_trip(c, id, 0, 13, 0.0f);
}

// Round to nearest: error <= half an ulp = 2^-(mantissa bits + 1) relative to the value (all test
// values are normal numbers in either format).
TEST(PagedKVCache, F16RoundTripWithinHalfUlp) {
  PagedKVCache c(small_params(DType::kF16, {false, true}, 8), 64);
  const SeqId id = c.add_sequence();
  step(c, id, 5);
  step(c, id, 1);
  expect_round_trip(c, id, 0, 6, std::ldexp(1.0f, -11));
}

TEST(PagedKVCache, Bf16RoundTripWithinHalfUlp) {
  PagedKVCache c(small_params(DType::kBF16, {true, false}, 8), 64);
  const SeqId id = c.add_sequence();
  step(c, id, 9);
  expect_round_trip(c, id, 0, 9, std::ldexp(1.0f, -8));
  // And the stored bits are exactly the library's conversion, not merely close.
  std::vector<KVBlock> b;
  c.blocks(id, 1, 2, 3, b);
  ASSERT_EQ(b.size(), 1u);
  uint16_t h;
  std::memcpy(&h, b[0].v, 2);
  EXPECT_EQ(h, f32_to_bf16(kv_row(c.params(), id, 1, 2, true)[0]));
}

TEST(PagedKVCache, InterleavedSequencesKeepTheirOwnRows) {
  PagedKVCache c(small_params(DType::kF32, {true, false, false}, 6), 200);
  const SeqId a = c.add_sequence();
  const SeqId b = c.add_sequence();
  const SeqId d = c.add_sequence();
  step(c, a, 3);
  step(c, b, 10);
  step(c, d, 1);
  for (int i = 0; i < 9; ++i) {  // round-robin decode, as a continuous batcher would
    step(c, a, 1);
    step(c, d, 1);
    if (i % 2 == 0) step(c, b, 1);
  }
  EXPECT_EQ(c.length(a), 12);
  EXPECT_EQ(c.length(b), 15);
  EXPECT_EQ(c.length(d), 10);
  for (SeqId id : {a, b, d}) {
    const int64_t len = c.length(id);
    // Sliding layer 0 only keeps its window; read what every layer still holds.
    expect_round_trip(c, id, c.first_retained_pos(id, 0), len, 0.0f);
    expect_round_trip(c, id, 0, 0, 0.0f);
  }
  // Releasing one does not disturb the others.
  c.release(b);
  expect_round_trip(c, a, c.first_retained_pos(a, 0), c.length(a), 0.0f);
  expect_round_trip(c, d, c.first_retained_pos(d, 0), c.length(d), 0.0f);
}

TEST(PagedKVCache, BlocksSplitAtPageBoundariesAndPartialPages) {
  const auto p = small_params(DType::kF32, {false}, 0);  // page_size 4, 8 floats per row
  PagedKVCache c(p, 16);
  const SeqId id = c.add_sequence();
  step(c, id, 11);
  std::vector<KVBlock> out;
  c.blocks(id, 0, 3, 10, out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].first_pos, 3);
  EXPECT_EQ(out[0].n, 1);
  EXPECT_EQ(out[1].first_pos, 4);
  EXPECT_EQ(out[1].n, 4);
  EXPECT_EQ(out[2].first_pos, 8);
  EXPECT_EQ(out[2].n, 2);
  // The pool is 2 * n_kv_heads planes of 16 runs (one per page): K of kv head h in plane h, V in
  // plane n_kv_heads + h. Each run holds one head's page_size rows.
  const int64_t run = p.run_stride(), plane = 16 * run;
  EXPECT_EQ(run, p.page_size * p.head_dim * 4);  // 128: already a multiple of 64
  for (const KVBlock& b : out) {
    EXPECT_EQ(b.v - b.k, p.n_kv_heads * plane);
    EXPECT_EQ(b.row_stride, p.head_dim * 4);
    EXPECT_EQ(b.head_stride, plane);
    EXPECT_EQ(b.k_row(1, 1) - b.k, b.head_stride + b.row_stride);
    // Runs are cache-line aligned, so a block starting a page is too.
    if (b.first_pos % p.page_size == 0) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b.k) % 64, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b.v) % 64, 0u);
    }
  }
  // Pages reserved together are adjacent in every plane, so one head's K (and V) rows of
  // consecutive pages form one linear run in memory (what the decode attention streams).
  EXPECT_EQ(out[2].k - out[1].k, run);
  EXPECT_EQ(out[1].k_row(p.page_size - 1, 1) + head_row_bytes(p), out[2].k_row(0, 1));
  EXPECT_EQ(out[1].v_row(p.page_size - 1, 0) + head_row_bytes(p), out[2].v_row(0, 0));
  // The whole committed range: 3 blocks (4 + 4 + 3, the last page partial).
  c.blocks(id, 0, 0, 11, out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[2].n, 3);
  c.blocks(id, 0, 5, 5, out);
  EXPECT_TRUE(out.empty());
  EXPECT_THROW(c.blocks(id, 0, 0, 12, out), std::out_of_range);  // past length
  EXPECT_THROW(c.blocks(id, 0, 6, 5, out), std::out_of_range);
  EXPECT_THROW(c.blocks(id, 0, -1, 2, out), std::out_of_range);
  EXPECT_THROW(c.blocks(id, 1, 0, 2, out), std::out_of_range);  // no layer 1
}

TEST(PagedKVCache, BlocksReachStoredButUncommittedPositions) {
  PagedKVCache c(small_params(DType::kF32, {false, false}, 0), 16);
  const SeqId id = c.add_sequence();
  step(c, id, 3);
  c.reserve(id, 2);
  // Layer 0 stores the step's positions and attends them before layer 1 has stored anything.
  const auto& p = c.params();
  for (int64_t pos = 3; pos < 5; ++pos) {
    c.store(id, 0, pos, kv_row(p, id, 0, pos, false).data(), kv_row(p, id, 0, pos, true).data());
  }
  std::vector<KVBlock> out;
  c.blocks(id, 0, 0, 5, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].first_pos + out[1].n, 5);
  EXPECT_THROW(c.blocks(id, 1, 0, 5, out), std::out_of_range);  // layer 1 not stored yet
  EXPECT_THROW(c.commit(id, 2), std::invalid_argument);         // nor may the step commit
  for (int64_t pos = 3; pos < 5; ++pos) {
    c.store(id, 1, pos, kv_row(p, id, 1, pos, false).data(), kv_row(p, id, 1, pos, true).data());
  }
  c.commit(id, 2);
  EXPECT_EQ(c.length(id), 5);
  expect_round_trip(c, id, 0, 5, 0.0f);
}

TEST(PagedKVCache, ReserveIsAllOrNothing) {
  PagedKVCache c(small_params(DType::kF32, {false, false}, 0), 10);  // 2 layers, 4 tokens per page
  const SeqId a = c.add_sequence();
  EXPECT_EQ(c.pages_needed(a, 13), 8);  // 4 pages per layer
  step(c, a, 13);
  EXPECT_EQ(c.free_pages(), 2);
  const SeqId b = c.add_sequence();
  EXPECT_EQ(c.pages_needed(b, 5), 4);
  try {
    c.reserve(b, 5);
    FAIL() << "reserve past the pool succeeded";
  } catch (const KVCacheFullError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("needs 4 pages"), std::string::npos) << msg;
    EXPECT_NE(msg.find("only 2 of 10"), std::string::npos) << msg;
  }
  // Nothing changed: not even the layer that could have been served.
  EXPECT_EQ(c.free_pages(), 2);
  EXPECT_EQ(c.pages_held(b, 0), 0);
  EXPECT_EQ(c.pages_held(b, 1), 0);
  EXPECT_EQ(c.reserved_end(b), 0);
  EXPECT_THROW(c.store(b, 0, 0, kv_row(c.params(), b, 0, 0, false).data(),
                       kv_row(c.params(), b, 0, 0, true).data()),
               std::out_of_range);
  // A request that fits still works, and a's tail page absorbs its next 3 positions for free.
  EXPECT_EQ(c.pages_needed(a, 3), 0);
  step(c, a, 3);
  step(c, b, 4);
  EXPECT_EQ(c.free_pages(), 0);
  EXPECT_THROW(c.reserve(a, 1), KVCacheFullError);
  EXPECT_EQ(c.length(a), 16);
  c.release(b);
  step(c, a, 1);  // freed pages are reused
  expect_round_trip(c, a, 0, 17, 0.0f);
}

TEST(PagedKVCache, ReleaseFreesEverythingAndForgetsTheId) {
  PagedKVCache c(small_params(DType::kBF16, {true, false, true}, 5), 50);
  const SeqId a = c.add_sequence();
  const SeqId b = c.add_sequence();
  step(c, a, 17);
  step(c, b, 6);
  c.reserve(a, 3);  // reserved, never committed: still freed
  EXPECT_GT(c.used_pages(), 0);
  c.release(a);
  c.release(b);
  EXPECT_EQ(c.used_pages(), 0);
  EXPECT_EQ(c.free_pages(), c.total_pages());
  EXPECT_FALSE(c.contains(a));
  EXPECT_THROW(c.release(a), std::out_of_range);
  EXPECT_THROW(c.length(b), std::out_of_range);
  EXPECT_EQ(c.num_sequences(), 0);
  // Ids are not recycled, so a stale handle cannot alias a new sequence.
  EXPECT_NE(c.add_sequence(), a);
}

TEST(PagedKVCache, BadArgumentsThrow) {
  PagedKVCache c(small_params(DType::kF32, {false}, 0), 4);
  const SeqId id = c.add_sequence();
  const auto k = kv_row(c.params(), id, 0, 0, false);
  std::vector<KVBlock> out;
  EXPECT_THROW(c.length(id + 100), std::out_of_range);
  EXPECT_THROW(c.reserve(id + 100, 1), std::out_of_range);
  EXPECT_THROW(c.pages_needed(id + 100, 1), std::out_of_range);
  EXPECT_THROW(c.store(id + 100, 0, 0, k.data(), k.data()), std::out_of_range);
  EXPECT_THROW(c.commit(id + 100, 0), std::out_of_range);
  EXPECT_THROW(c.blocks(id + 100, 0, 0, 0, out), std::out_of_range);
  EXPECT_THROW(c.kv_bytes(id + 100), std::out_of_range);
  EXPECT_THROW(c.reserve(id, -1), std::invalid_argument);
  c.reserve(id, 2);
  EXPECT_THROW(c.store(id, 0, 2, k.data(), k.data()), std::out_of_range);   // not reserved
  EXPECT_THROW(c.store(id, -1, 0, k.data(), k.data()), std::out_of_range);  // bad layer
  EXPECT_THROW(c.store(id, 1, 0, k.data(), k.data()), std::out_of_range);
  EXPECT_THROW(c.store(id, 0, 0, nullptr, k.data()), std::invalid_argument);
  EXPECT_THROW(c.commit(id, 3), std::invalid_argument);  // more than reserved
  EXPECT_THROW(c.commit(id, -1), std::invalid_argument);
  EXPECT_THROW(c.commit(id, 1), std::invalid_argument);  // reserved but not stored
  store_step(c, id, 2);
  c.commit(id, 2);
  EXPECT_THROW(c.store(id, 0, 0, k.data(), k.data()), std::out_of_range);  // committed: immutable
  EXPECT_THROW(PagedKVCache(small_params(DType::kF32, {false}, 0), -1), std::invalid_argument);
  EXPECT_THROW(PagedKVCache(small_params(DType::kQ4_K, {false}, 0), 1), std::invalid_argument);
}

TEST(PagedKVCache, EmptyPoolOnlyServesEmptyRequests) {
  PagedKVCache c(small_params(DType::kF32, {false}, 0), 0);
  const SeqId id = c.add_sequence();
  c.reserve(id, 0);
  c.commit(id, 0);
  EXPECT_THROW(c.reserve(id, 1), KVCacheFullError);
}

TEST(PagedKVCache, TruncateDropsPositionsAndFreesTailPages) {
  PagedKVCache c(small_params(DType::kF32, {false, false}, 0), 20);
  const SeqId id = c.add_sequence();
  step(c, id, 10);   // 3 pages per layer
  c.reserve(id, 4);  // 4 pages per layer
  EXPECT_EQ(c.used_pages(), 8);
  c.truncate(id, 5);  // keeps 2 pages per layer, drops the reservation
  EXPECT_EQ(c.length(id), 5);
  EXPECT_EQ(c.reserved_end(id), 5);
  EXPECT_EQ(c.used_pages(), 4);
  std::vector<KVBlock> out;
  EXPECT_THROW(c.blocks(id, 0, 0, 6, out), std::out_of_range);
  expect_round_trip(c, id, 0, 5, 0.0f);
  step(c, id, 6);  // positions 5.. are rewritten with fresh rows
  expect_round_trip(c, id, 0, 11, 0.0f);
  EXPECT_THROW(c.truncate(id, 12), std::out_of_range);
  c.truncate(id, 0);
  EXPECT_EQ(c.used_pages(), 0);
}

TEST(PagedKVCache, KvBytesMatchesPagesHeld) {
  const auto p = small_params(DType::kF16, {false, false, false}, 0);
  PagedKVCache c(p, 30);
  const SeqId id = c.add_sequence();
  EXPECT_EQ(c.kv_bytes(id), 0);
  for (int64_t len = 1; len <= 20; ++len) {
    step(c, id, 1);
    // Global layers: ceil(len / 4) pages each.
    const int64_t pages = 3 * ((len + 3) / 4);
    EXPECT_EQ(c.kv_bytes(id), pages * p.page_bytes()) << len;
    EXPECT_EQ(c.used_pages(), pages);
    EXPECT_EQ(PagedKVCache::kv_bytes_for_length(p, len), c.kv_bytes(id)) << len;
  }
}

}  // namespace
}  // namespace gemmax
