// Load-time repacking at the checkpoint (Gemma3Checkpoint::open, kernels/weight_repack.h) on a tiny
// random model whose weights are all Q5_0, the tied embedding included
// (tests/fixtures/tiny/q5_0, tools/make_repack_fixture.py): which views are repacked, that the
// embedding lookup and the LM head share the repacked copy, and that the logits equal those of
// the stored layout bit for bit on both kernel paths (a prefill, then decode steps).
#include <gtest/gtest.h>

#include <vector>

#include "../kernels/kernel_paths.h"
#include "golden_util.h"
#include "kernels/matmul.h"
#include "model/gemma3_weights.h"

namespace gemmax {
namespace {

using testing::fixture;

const char* const kModel = "tiny/q5_0/model.gguf";

// Logits of a prompt's prefill followed by three decode steps, every row, in order.
std::vector<std::vector<float>> run(const Gemma3Checkpoint& ckpt) {
  Gemma3Model model(ckpt.config(), ckpt.weights(), 2);
  PagedKVCache cache(model.kv_params(), 16);
  return testing::step_logits(model, cache, cache.add_sequence(),
                              {{2, 17, 300, 5, 42, 7, 99, 511, 256, 3}, {128}, {64}, {1}});
}

TEST(RepackedCheckpoint, EveryQ5_0WeightAndTheTiedEmbeddingAreRepacked) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  PathGuard guard;
  set_kernel_path(KernelPath::kAvx2);
  const auto ckpt = Gemma3Checkpoint::open(fixture(kModel), Repack::kAlways);
  const Gemma3Weights& w = ckpt->weights();
  EXPECT_EQ(ckpt->repacked_count(), 1u + 2u * 7u);  // the LM head and 7 per layer
  EXPECT_EQ(w.lm_head.dtype, DType::kQ5_0x4);
  EXPECT_EQ(w.embed_tokens.dtype, DType::kQ5_0x4);
  EXPECT_EQ(w.embed_tokens.data, w.lm_head.data);  // tied: one copy
  for (const Gemma3LayerWeights& l : w.layers)
    for (const TensorView* v :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
      EXPECT_EQ(v->dtype, DType::kQ5_0x4) << v->name;
  // gemmax info still lists the file's formats.
  for (const TensorView& t : ckpt->tensor_list()) EXPECT_NE(t.dtype, DType::kQ5_0x4) << t.name;
}

TEST(RepackedCheckpoint, NothingIsRepackedOnTheScalarPathOrWhenAskedNot) {
  PathGuard guard;
  set_kernel_path(KernelPath::kScalar);
  EXPECT_EQ(Gemma3Checkpoint::open(fixture(kModel), Repack::kAlways)->repacked_count(), 0u);
  if (!kernel_path_supported(KernelPath::kAvx2)) return;
  set_kernel_path(KernelPath::kAvx2);
  const auto stored = Gemma3Checkpoint::open(fixture(kModel), Repack::kNever);
  EXPECT_EQ(stored->repacked_count(), 0u);
  EXPECT_EQ(stored->weights().embed_tokens.dtype, DType::kQ5_0);
}

TEST(RepackedCheckpoint, LogitsEqualTheStoredLayoutsOnEveryPath) {
  if (!kernel_path_supported(KernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  PathGuard guard;
  set_kernel_path(KernelPath::kAvx2);
  const auto repacked = Gemma3Checkpoint::open(fixture(kModel), Repack::kAlways);
  const auto stored = Gemma3Checkpoint::open(fixture(kModel), Repack::kNever);
  ASSERT_GT(repacked->repacked_count(), 0u);
  EXPECT_TRUE(testing::same_bits(run(*repacked), run(*stored))) << "avx2";
  // The scalar kernels read the repacked layout through the dequantizer.
  set_kernel_path(KernelPath::kScalar);
  EXPECT_TRUE(testing::same_bits(run(*repacked), run(*stored))) << "scalar";
}

}  // namespace
}  // namespace gemmax
