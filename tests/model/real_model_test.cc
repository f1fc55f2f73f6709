// The real Gemma 3 270M Q4_K_M GGUF against two references:
//  - exact logits (numpy float64 over gguf-py's dequantized weights,
//  tools/make_real_model_f64_reference.py)
//    for the short prompts: the scalar kernels must match them to f32 rounding;
//  - llama.cpp (llama-cpp-python 0.3.36 on the same file, tools/make_real_model_goldens.py) on four
//    prompts, one longer than the 512-token sliding window, and greedy continuations.
// Measured (english prompt): llama.cpp's own logits sit 0.1-1.3 away from the exact ones (mean KL
// 1e-2): it rounds activations to int8 and several intermediates to f16. gemmax's AVX2 kernels,
// which round activations to int8 too, are about as far (0.1-1.2); its scalar kernels are within
// 4e-5.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "golden_util.h"
#include "kernels/matmul.h"
#include "model/default_model.h"

namespace gemmax {
namespace {

using nlohmann::json;

// Positions where the reference's top two logits are closer than this are near-ties that int8
// rounding may break either way: the fast path is up to ~1.3 off the exact logits (see above) and
// llama.cpp up to 1.97, in different directions. Observed flips against llama.cpp had margins up
// to 0.44 with the first AVX2 kernels and 0.57 (one of 700 positions) once the Q4_0/Q5_0 kernels
// applied their offsets exactly in int32 (mean KL to llama.cpp on the four prompts 3.7e-3..9.5e-3
// after, 3.5e-3..1.2e-2 before). A wrong window, rope base or norm flips far more and by larger
// margins, and the tests below also bound the share of agreeing positions and the KL.
constexpr double kNearTie = 1.0;

struct Agreement {
  int positions = 0, top1_match = 0;
  double kl_sum = 0, kl_max = 0, max_abs_diff = 0;
  double kl_mean() const { return kl_sum / std::max(positions, 1); }
};

// KL(reference || gemmax) over the reference's top-20 tokens plus one bucket for the rest of the
// vocabulary: a lower bound of the full KL (grouping never increases it), close to it where the top
// 20 hold nearly all the mass, as they do here.
double kl_top_k(const json& top, double lse, const float* row, int64_t vocab) {
  const double max_l = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(row[i] - max_l);
  const double our_lse = max_l + std::log(sum);
  double kl = 0, p_rest = 1, q_rest = 1;
  for (const json& e : top) {
    const double p = std::exp(e[1].get<double>() - lse);
    const double q = std::exp(row[e[0].get<int>()] - our_lse);
    kl += p * (std::log(p) - std::log(q));
    p_rest -= p;
    q_rest -= q;
  }
  if (p_rest > 1e-9 && q_rest > 1e-9) kl += p_rest * (std::log(p_rest) - std::log(q_rest));
  return std::max(kl, 0.0);
}

class RealModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ckpt_ = Gemma3Checkpoint::open(resolve_model_path("")).release();
    llama_ = new json(testing::load_json(testing::fixture("real270m/golden.json")));
    exact_ = new json(testing::load_json(testing::fixture("real270m/reference_f64.json")));
  }
  static void TearDownTestSuite() {
    delete ckpt_;
    delete llama_;
    delete exact_;
  }
  void TearDown() override { set_kernel_path(saved_path_); }

  // All-position logits of the prompt, computed in chunks of 128 tokens (chunked prefill), compared
  // with the reference's top-20 logits and log-sum-exp at every position.
  Agreement compare(Gemma3Model& model, const json& p) {
    Agreement a;
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    PagedKVCache cache(model.kv_params(), 18 * 64);
    const SeqId seq = cache.add_sequence();
    for (size_t start = 0; start < ids.size(); start += 128) {
      Gemma3Inputs in;
      in.add_row(seq, std::vector<int32_t>(ids.begin() + start,
                                           ids.begin() + std::min(ids.size(), start + 128)));
      in.return_logits = ReturnLogits::kAll;
      const Gemma3Outputs out = model.execute(in, cache);
      for (int64_t i = 0; i < out.num_logit_rows(); ++i)
        check_position(p, out.positions[i], out.row(i), out.vocab_size, a);
    }
    std::printf(
        "[ %s ] %zu tokens: top-1 agrees at %d/%d positions; KL mean %.2e max %.2e; "
        "max |logit diff| %.3g\n",
        p["name"].get<std::string>().c_str(), ids.size(), a.top1_match, a.positions, a.kl_mean(),
        a.kl_max, a.max_abs_diff);
    return a;
  }

  static void check_position(const json& p, int64_t pos, const float* row, int64_t vocab,
                             Agreement& a) {
    const json& top = p["top"][pos];
    const int32_t ours = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
    const double margin = top[0][1].get<double>() - top[1][1].get<double>();
    ++a.positions;
    if (ours == top[0][0].get<int32_t>()) {
      ++a.top1_match;
    } else if (margin >= kNearTie) {
      ADD_FAILURE() << p["name"] << " pos " << pos << ": gemmax top-1 " << ours << ", reference "
                    << top[0][0] << " (margin " << margin << ")";
    }
    for (const json& e : top)
      a.max_abs_diff =
          std::max(a.max_abs_diff, std::abs(row[e[0].get<int>()] - e[1].get<double>()));
    const double kl = kl_top_k(top, p["lse"][pos].get<double>(), row, vocab);
    a.kl_sum += kl;
    a.kl_max = std::max(a.kl_max, kl);
  }

  static Gemma3Checkpoint* ckpt_;
  static json* llama_;
  static json* exact_;
  KernelPath saved_path_ = kernel_path();
};
Gemma3Checkpoint* RealModel::ckpt_ = nullptr;
json* RealModel::llama_ = nullptr;
json* RealModel::exact_ = nullptr;

// f32 arithmetic on exactly dequantized weights: only summation order differs from the f64
// reference (dot products of 640-2048 terms, 18 layers): observed 3.6e-5; 2e-3 still catches any
// real mistake.
TEST_F(RealModel, ScalarKernelsMatchExactLogits) {
  set_kernel_path(KernelPath::kScalar);
  Gemma3Model model(ckpt_->config(), ckpt_->weights(), 2);
  for (const json& p : (*exact_)["prompts"]) {
    const Agreement a = compare(model, p);
    EXPECT_EQ(a.top1_match, a.positions) << p["name"];
    EXPECT_LT(a.max_abs_diff, 2e-3) << p["name"];
  }
}

// The fast kernels round activations to int8 like llama.cpp; they must stay about as close to the
// exact logits as llama.cpp is (mean KL ~1e-2 on these prompts).
TEST_F(RealModel, FastKernelsStayNearExactLogits) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  set_kernel_path(KernelPath::kAvx2);
  Gemma3Model model(ckpt_->config(), ckpt_->weights(), 2);
  for (const json& p : (*exact_)["prompts"]) {
    const Agreement a = compare(model, p);
    EXPECT_LT(a.kl_mean(), 2e-2) << p["name"];
    // The largest single logit difference over all positions x 262144 entries is a tail
    // statistic that float summation order moves: the Q4_0/Q5_0 kernels' four-block epilogue
    // (identical integer dots, outputs within 2e-6 of the old pair kernel on real tensors) moved
    // it from 2.53 to 3.70 on the chat prompt while the mean KL stayed at ~3e-3 and top-1 went
    // from 15/17 to 16/17: int8 activation rounding amplifies last-bit differences through 18
    // layers. llama.cpp vs exact: up to 1.97 here. A broken kernel moves it by tens.
    EXPECT_LT(a.max_abs_diff, 4.5) << p["name"];
  }
}

// On the AVX2 path the file's 81 Q5_0 weights (every 640- and 1024-wide matmul row; Q4_K needs
// 256-element rows) are repacked at load, and the logits are those of the stored layout bit for
// bit: a prompt in two prefill chunks, then decode steps.
TEST_F(RealModel, RepackedWeightsGiveTheStoredLayoutsLogitsBitForBit) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  set_kernel_path(KernelPath::kAvx2);
  const auto repacked = Gemma3Checkpoint::open(resolve_model_path(""), Repack::kAlways);
  const auto stored = Gemma3Checkpoint::open(resolve_model_path(""), Repack::kNever);
  EXPECT_EQ(repacked->repacked_count(), 81u);
  EXPECT_EQ(repacked->weights().layers[0].q_proj.dtype, DType::kQ5_0x4);
  EXPECT_EQ(stored->repacked_count(), 0u);
  EXPECT_EQ(stored->weights().layers[0].q_proj.dtype, DType::kQ5_0);
  const auto ids = (*llama_)["prompts"][0]["ids"].get<std::vector<int32_t>>();
  ASSERT_GE(ids.size(), 8u);
  const size_t half = ids.size() / 2;
  const std::vector<std::vector<int32_t>> steps = {
      {ids.begin(), ids.begin() + half}, {ids.begin() + half, ids.end()}, {2}, {3}, {4}};
  std::vector<std::vector<float>> logits[2];
  const Gemma3Checkpoint* ckpts[2] = {repacked.get(), stored.get()};
  for (int c = 0; c < 2; ++c) {
    Gemma3Model model(ckpts[c]->config(), ckpts[c]->weights(), 2);
    PagedKVCache cache(model.kv_params(), 64);
    logits[c] = testing::step_logits(model, cache, cache.add_sequence(), steps);
  }
  EXPECT_TRUE(testing::same_bits(logits[0], logits[1]));
}

// Against llama.cpp: both engines are ~1e-2 (mean KL) from the exact distribution in different
// directions; a wrong window, rope base or norm moves the KL past 0.1.
TEST_F(RealModel, TopTokenAndDistributionAgreeWithLlamaCpp) {
  Gemma3Model model(ckpt_->config(), ckpt_->weights(), 2);
  for (const json& p : (*llama_)["prompts"]) {
    const Agreement a = compare(model, p);
    EXPECT_LT(a.kl_mean(), 2.5e-2) << p["name"];
    EXPECT_LT(a.kl_max, 0.2) << p["name"];
    // Flips happen only at near-ties: at most 10% of positions (2 on the short prompts); observed
    // 94% agreement on the 700-token prompt, 15/17 on the chat prompt.
    EXPECT_GE(a.top1_match, a.positions - std::max(2.0, 0.1 * a.positions)) << p["name"];
  }
}

TEST_F(RealModel, GreedyContinuationsMatchLlamaCpp) {
  Gemma3Model model(ckpt_->config(), ckpt_->weights(), 2);
  for (const json& p : (*llama_)["prompts"]) {
    if (!p.contains("greedy")) continue;
    const json& g = p["greedy"];
    const auto want = g["ids"].get<std::vector<int32_t>>();
    const auto margins = g["margins"].get<std::vector<double>>();
    PagedKVCache cache(model.kv_params(), 18 * 16);
    const SeqId seq = cache.add_sequence();
    std::vector<int32_t> feed = p["ids"].get<std::vector<int32_t>>();
    size_t matched = 0;
    for (size_t step = 0; step < want.size(); ++step) {
      Gemma3Inputs in;
      in.add_row(seq, feed);
      const Gemma3Outputs out = model.execute(in, cache);
      const int32_t next = static_cast<int32_t>(
          std::max_element(out.row(0), out.row(0) + out.vocab_size) - out.row(0));
      if (next != want[step]) {
        // Free-running greedy may only part ways with llama.cpp at a near-tie.
        EXPECT_LT(margins[step], kNearTie)
            << p["name"] << " step " << step << ": gemmax " << next << ", llama.cpp " << want[step];
        break;
      }
      ++matched;
      feed = {next};
    }
    std::printf("[ %s ] greedy: %zu/%zu tokens identical to llama.cpp\n",
                p["name"].get<std::string>().c_str(), matched, want.size());
  }
}

}  // namespace
}  // namespace gemmax
