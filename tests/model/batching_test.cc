// The model step over ragged batches and the paged cache: batching, chunked prefill and
// token-by-token decode must give the same logits as one prompt run alone; malformed inputs are
// rejected cleanly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "golden_util.h"
#include "kernels/matmul.h"

namespace gemmax {
namespace {

using testing::all_logits;
using testing::fixture;

// Same arithmetic in a different grouping of rows: results may differ by float reassociation only.
constexpr double kTol = 1e-5;

double max_diff(const float* a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < b.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

class ModelStep : public ::testing::Test {
 protected:
  void SetUp() override {
    ckpt_ = Gemma3Checkpoint::open(fixture("tiny/base"));
    model_ = std::make_unique<Gemma3Model>(ckpt_->config(), ckpt_->weights(), 2);
    cache_ = std::make_unique<PagedKVCache>(model_->kv_params(DType::kF32, 4), 512);
  }
  std::vector<int32_t> prompt(int n, int seed) const {
    std::vector<int32_t> p;
    for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((seed * 131 + i * 37) % 512));
    return p;
  }
  std::unique_ptr<Gemma3Checkpoint> ckpt_;
  std::unique_ptr<Gemma3Model> model_;
  std::unique_ptr<PagedKVCache> cache_;
};

TEST_F(ModelStep, RaggedBatchEqualsRowsAlone) {
  const std::vector<std::vector<int32_t>> prompts = {prompt(9, 1), prompt(3, 2), prompt(13, 3)};
  std::vector<std::vector<std::vector<float>>> alone;
  for (const auto& p : prompts) alone.push_back(all_logits(*model_, p, *cache_));
  Gemma3Inputs in;
  for (const auto& p : prompts) in.add_row(cache_->add_sequence(), p);
  in.return_logits = ReturnLogits::kAll;
  Gemma3Outputs out = model_->execute(in, *cache_);
  ASSERT_EQ(out.logit_row_offsets, (std::vector<int64_t>{0, 9, 12, 25}));
  for (size_t r = 0; r < prompts.size(); ++r)
    for (size_t t = 0; t < prompts[r].size(); ++t)
      EXPECT_LE(max_diff(out.row(out.logit_row_offsets[r] + t), alone[r][t]), kTol)
          << r << "," << t;
}

TEST_F(ModelStep, ChunkedPrefillAndDecodeEqualOneShot) {
  const auto p = prompt(14, 5);  // longer than the sliding window (4) and the page size (4)
  const auto one_shot = all_logits(*model_, p, *cache_);
  const SeqId seq = cache_->add_sequence();
  size_t done = 0;
  for (size_t chunk : {5u, 1u, 3u, 1u, 1u, 3u}) {
    Gemma3Inputs in;
    in.add_row(seq, std::vector<int32_t>(p.begin() + done, p.begin() + done + chunk));
    in.return_logits = ReturnLogits::kAll;
    Gemma3Outputs out = model_->execute(in, *cache_);
    for (size_t i = 0; i < chunk; ++i) {
      EXPECT_EQ(out.positions[i], static_cast<int64_t>(done + i));
      EXPECT_LE(max_diff(out.row(i), one_shot[done + i]), kTol) << done + i;
    }
    done += chunk;
  }
  EXPECT_EQ(cache_->length(seq), 14);
}

// Attention splits a token's keys into chunks merged afterwards; a decode step (one token) runs
// the chunks (and heads) on different threads, a busy batch runs a token's chunks in turn. With
// chunks of 8 keys and a 60-token context (global layers see 8 chunks), a token decoded alone must
// give the same logits bit for bit as the same token decoded in a batch beside a 20-token prefill,
// on every kernel path; and the chunked attention must equal unchunked attention up to
// reassociation (kTol).
TEST_F(ModelStep, DecodeIsBitIdenticalAloneOrInABusyBatch) {
  const KernelPath saved = kernel_path();
  std::vector<KernelPath> paths = {KernelPath::kScalar};
  if (kernel_path_supported(KernelPath::kAvx2)) paths.push_back(KernelPath::kAvx2);
  for (KernelPath path : paths) {
    set_kernel_path(path);
    auto run = [&](int64_t chunk, bool busy) {
      model_->set_attention_key_chunk(chunk);
      PagedKVCache cache(model_->kv_params(DType::kF32, 4), 512);
      const SeqId a = cache.add_sequence();
      Gemma3Inputs pre;
      pre.add_row(a, prompt(60, 9));
      model_->execute(pre, cache);
      Gemma3Inputs step;
      step.add_row(a, {77});
      if (busy) step.add_row(cache.add_sequence(), prompt(20, 10));
      const Gemma3Outputs out = model_->execute(step, cache);
      return std::vector<float>(out.row(0), out.row(0) + out.vocab_size);
    };
    // Chunks of 8: decode units are a kv group x a chunk; chunks of 64 (one chunk): one head each.
    const auto alone = run(8, false), busy = run(8, true), unchunked = run(256, false);
    EXPECT_EQ(alone, busy) << kernel_path_name(path);
    EXPECT_EQ(run(64, false), run(64, true)) << kernel_path_name(path);
    EXPECT_LE(max_diff(alone.data(), unchunked), kTol) << kernel_path_name(path);
  }
  model_->set_attention_key_chunk(128);  // the default
  set_kernel_path(saved);
}

TEST_F(ModelStep, ReturnLogitsModes) {
  const auto p = prompt(7, 9);
  const auto all = all_logits(*model_, p, *cache_);
  for (auto [mode, n, expect] :
       {std::tuple{ReturnLogits::kLastToken, 1, 1}, std::tuple{ReturnLogits::kVariable, 3, 3},
        std::tuple{ReturnLogits::kVariable, 50, 7}}) {
    Gemma3Inputs in;
    in.add_row(cache_->add_sequence(), p);
    in.return_logits = mode;
    in.return_n_logits = n;
    Gemma3Outputs out = model_->execute(in, *cache_);
    ASSERT_EQ(out.num_logit_rows(), expect);
    for (int i = 0; i < expect; ++i) {
      EXPECT_EQ(out.positions[i], 7 - expect + i);
      EXPECT_LE(max_diff(out.row(i), all[7 - expect + i]), kTol);
    }
  }
}

// A 16-bit KV cache rounds K and V to 8 (bf16) or 11 (f16) significant bits, 2^-9 / 2^-12 relative;
// seven random layers amplify that on logits of max ~15: observed 3e-3 (f16) and 3e-2 (bf16).
// They must stay close (and not be identical: the conversion really happens).
TEST_F(ModelStep, HalfPrecisionKvCacheStaysClose) {
  const auto p = prompt(12, 4);
  const auto ref = all_logits(*model_, p, *cache_);
  for (auto [dtype, tol] : {std::pair{DType::kF16, 1e-2}, std::pair{DType::kBF16, 8e-2}}) {
    PagedKVCache half(model_->kv_params(dtype, 4), 128);
    const auto got = all_logits(*model_, p, half);
    double worst = 0;
    for (size_t t = 0; t < p.size(); ++t) worst = std::max(worst, max_diff(got[t].data(), ref[t]));
    EXPECT_LE(worst, tol) << dtype_name(dtype);
    EXPECT_GT(worst, 0.0) << dtype_name(dtype);
  }
}

TEST_F(ModelStep, MalformedInputsAreRejected) {
  const SeqId seq = cache_->add_sequence();
  Gemma3Inputs bad_token;
  bad_token.add_row(seq, {1, 512});
  EXPECT_THROW(model_->execute(bad_token, *cache_), std::invalid_argument);
  Gemma3Inputs bad_offsets;
  bad_offsets.add_row(seq, {1, 2});
  bad_offsets.input_row_offsets.back() = 5;
  EXPECT_THROW(model_->execute(bad_offsets, *cache_), std::invalid_argument);
  Gemma3Inputs unknown_seq;
  unknown_seq.add_row(9999, {1});
  EXPECT_THROW(model_->execute(unknown_seq, *cache_), std::invalid_argument);
  Gemma3Inputs too_long;
  too_long.add_row(seq, std::vector<int32_t>(257, 1));  // max_position_embeddings is 256
  EXPECT_THROW(model_->execute(too_long, *cache_), std::invalid_argument);
  EXPECT_EQ(cache_->length(seq), 0);
}

TEST_F(ModelStep, FullCacheIsAnErrorAndLeavesOthersIntact) {
  PagedKVCache small(model_->kv_params(DType::kF32, 4), 7 * 2);  // two pages per layer
  const SeqId a = small.add_sequence();
  Gemma3Inputs fits;
  fits.add_row(a, prompt(8, 1));
  model_->execute(fits, small);
  const SeqId b = small.add_sequence();
  Gemma3Inputs too_big;
  too_big.add_row(b, prompt(8, 2));
  EXPECT_THROW(model_->execute(too_big, small), KVCacheFullError);
  EXPECT_EQ(small.length(b), 0);
  small.release(a);
  EXPECT_NO_THROW(model_->execute(too_big, small));
}

// execute() into a kept Gemma3Outputs (what a decode loop does) gives what a fresh one gives, also
// when the number of logit rows shrinks and grows between steps: no stale rows, offsets or
// positions survive.
TEST_F(ModelStep, ReusedOutputsEqualFreshOnes) {
  const SeqId a = cache_->add_sequence(), b = cache_->add_sequence();
  Gemma3Inputs wide;
  wide.add_row(a, prompt(6, 3));
  wide.add_row(b, prompt(4, 4));
  wide.return_logits = ReturnLogits::kAll;
  Gemma3Outputs kept;
  model_->execute(wide, *cache_, kept);
  ASSERT_EQ(kept.logit_row_offsets, (std::vector<int64_t>{0, 6, 10}));

  const SeqId c = cache_->add_sequence(), d = cache_->add_sequence();
  Gemma3Inputs fresh_first, reuse_first;
  fresh_first.add_row(c, prompt(6, 3));
  reuse_first.add_row(d, prompt(6, 3));
  const Gemma3Outputs fresh = model_->execute(fresh_first, *cache_);
  model_->execute(reuse_first, *cache_, kept);  // 10 logit rows -> 1
  EXPECT_EQ(kept.logits, fresh.logits);
  EXPECT_EQ(kept.logit_row_offsets, fresh.logit_row_offsets);
  EXPECT_EQ(kept.positions, fresh.positions);

  Gemma3Inputs fresh_next, reuse_next;  // one decode token each, both rows in one step
  fresh_next.add_row(c, {7});
  fresh_next.add_row(a, {7});
  reuse_next.add_row(d, {7});
  reuse_next.add_row(b, {7});
  const Gemma3Outputs fresh2 = model_->execute(fresh_next, *cache_);
  model_->execute(reuse_next, *cache_, kept);  // 1 -> 2 rows
  ASSERT_EQ(kept.num_logit_rows(), 2);
  EXPECT_EQ(0, std::memcmp(kept.row(0), fresh2.row(0), sizeof(float) * kept.vocab_size));
  EXPECT_EQ(kept.positions, (std::vector<int64_t>{6, 4}));
}

// A profiled step counts itself, times every phase, and credits each matmul phase with the bytes of
// exactly its weights; the logits do not change, and detaching the profile stops the counting.
TEST_F(ModelStep, ProfileTimesEveryPhaseAndCountsWeightBytes) {
  const SeqId seq = cache_->add_sequence();
  Gemma3Inputs first;
  first.add_row(seq, prompt(5, 7));
  const Gemma3Outputs plain = model_->execute(first, *cache_);
  cache_->release(seq);

  StepProfile profile;
  model_->set_profile(&profile);
  const SeqId again = cache_->add_sequence();
  Gemma3Inputs same;
  same.add_row(again, prompt(5, 7));
  const Gemma3Outputs profiled = model_->execute(same, *cache_);
  Gemma3Inputs step;
  step.add_row(again, {3});
  model_->execute(step, *cache_);
  model_->set_profile(nullptr);
  model_->execute(step, *cache_);  // not counted

  EXPECT_EQ(profiled.logits, plain.logits);
  EXPECT_EQ(profile.steps, 2);
  const Gemma3Weights& w = ckpt_->weights();
  auto bytes = [](const TensorView& t) { return t.rows() * t.row_bytes(); };
  auto elems = [](const TensorView& t) { return t.rows() * t.cols(); };
  // Per matmul phase, summed over the layers: weight bytes, then weight elements.
  int64_t qkv = 0, o = 0, gate_up = 0, down = 0, qkv_e = 0, o_e = 0, gate_up_e = 0, down_e = 0;
  for (const Gemma3LayerWeights& l : w.layers) {
    qkv += bytes(l.q_proj) + bytes(l.k_proj) + bytes(l.v_proj);
    o += bytes(l.o_proj);
    gate_up += bytes(l.gate_proj) + bytes(l.up_proj);
    down += bytes(l.down_proj);
    qkv_e += elems(l.q_proj) + elems(l.k_proj) + elems(l.v_proj);
    o_e += elems(l.o_proj);
    gate_up_e += elems(l.gate_proj) + elems(l.up_proj);
    down_e += elems(l.down_proj);
  }
  auto at = [&](StepPhase p) { return static_cast<size_t>(p); };
  EXPECT_EQ(profile.bytes_read[at(StepPhase::kQkv)], 2 * qkv);
  EXPECT_EQ(profile.bytes_read[at(StepPhase::kOutProj)], 2 * o);
  EXPECT_EQ(profile.bytes_read[at(StepPhase::kGateUp)], 2 * gate_up);
  EXPECT_EQ(profile.bytes_read[at(StepPhase::kDown)], 2 * down);
  EXPECT_EQ(profile.bytes_read[at(StepPhase::kLmHead)], 2 * bytes(w.lm_head));
  // Attention: the K and V rows of every visible key, per layer, of the 5 prompt tokens and the
  // step (positions 0-5), windowed on sliding layers.
  const Gemma3Config& c = ckpt_->config();
  const int64_t row =
      c.num_key_value_heads * c.head_dim * dtype_row_bytes(cache_->params().dtype, 1);
  int64_t keys = 0;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer)
    for (int64_t p = 0; p <= 5; ++p)
      keys += c.layer_is_sliding[layer] ? std::min<int64_t>(p + 1, c.sliding_window) : p + 1;
  EXPECT_EQ(profile.bytes_read[at(StepPhase::kAttention)], 2 * keys * row);
  // Multiply-adds: weight elements times the rows multiplied (6 tokens through the layers, the
  // last logits of each step through the LM head), and the attention's scores and values.
  EXPECT_EQ(profile.multiply_adds[at(StepPhase::kQkv)], 6 * qkv_e);
  EXPECT_EQ(profile.multiply_adds[at(StepPhase::kOutProj)], 6 * o_e);
  EXPECT_EQ(profile.multiply_adds[at(StepPhase::kGateUp)], 6 * gate_up_e);
  EXPECT_EQ(profile.multiply_adds[at(StepPhase::kDown)], 6 * down_e);
  EXPECT_EQ(profile.multiply_adds[at(StepPhase::kLmHead)], 2 * elems(w.lm_head));
  EXPECT_EQ(profile.multiply_adds[at(StepPhase::kAttention)],
            2 * keys * c.num_attention_heads * c.head_dim);
  EXPECT_GT(profile.multiply_adds_per_second(StepPhase::kGateUp), 0.0);
  EXPECT_EQ(profile.multiply_adds_per_second(StepPhase::kGelu), 0.0);
  for (int i = 0; i < StepProfile::kPhases; ++i) {
    const auto phase = static_cast<StepPhase>(i);
    EXPECT_GT(profile.seconds[i], 0.0) << StepProfile::name(phase);
    if (!StepProfile::is_matmul(phase) && phase != StepPhase::kAttention) {
      EXPECT_EQ(profile.bytes_read[i], 0) << StepProfile::name(phase);
      EXPECT_EQ(profile.multiply_adds[i], 0) << StepProfile::name(phase);
    }
  }
  EXPECT_GT(profile.total_seconds(), profile.seconds[at(StepPhase::kLmHead)]);
}

// The fixed per-token cost: time outside the matmuls less the K/V bytes at the matmuls' rate, by
// hand on two steps: matmuls 300 MB in 12 ms (25 GB/s), attention 10 MB in 1 ms, 0.5 ms of other
// phases: outside = 1.5 ms, K/V at 25 GB/s = 0.4 ms, fixed 1.1 ms per 2 steps.
TEST(StepProfile, FixedCostIsTimeOutsideMatmulsLessKvBytesAtTheMatmulRate) {
  StepProfile p;
  p.steps = 2;
  auto at = [](StepPhase ph) { return static_cast<size_t>(ph); };
  p.seconds[at(StepPhase::kLmHead)] = 8e-3;
  p.bytes_read[at(StepPhase::kLmHead)] = 200'000'000;
  p.seconds[at(StepPhase::kGateUp)] = 4e-3;
  p.bytes_read[at(StepPhase::kGateUp)] = 100'000'000;
  p.seconds[at(StepPhase::kAttention)] = 1e-3;
  p.bytes_read[at(StepPhase::kAttention)] = 10'000'000;
  p.seconds[at(StepPhase::kNorms)] = 0.5e-3;
  EXPECT_DOUBLE_EQ(p.matmul_bytes_per_second(), 25e9);
  EXPECT_NEAR(p.outside_matmuls_seconds_per_step(), 0.75e-3, 1e-12);
  EXPECT_NEAR(p.fixed_seconds_per_step(), 0.55e-3, 1e-12);
  p.bytes_read[at(StepPhase::kAttention)] = 100'000'000;  // more than the time allows: 0
  EXPECT_EQ(p.fixed_seconds_per_step(), 0.0);
  EXPECT_EQ(StepProfile{}.fixed_seconds_per_step(), 0.0);  // nothing measured
}

}  // namespace
}  // namespace gemmax
