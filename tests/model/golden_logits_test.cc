// Whole-model golden tests: gemmax logits at every position of several prompts against
// transformers' Gemma3ForCausalLM (float32, eager) on tiny random models, in every checkpoint
// format of the fixture.
#include <gtest/gtest.h>

#include <cmath>

#include "golden_util.h"
#include "kernels/cpu_features.h"
#include "kernels/matmul.h"

namespace gemmax {
namespace {

using testing::all_logits;
using testing::fixture;
using testing::load_json;

struct GoldenCase {
  std::string name;
  std::string model;       // relative to tests/fixtures/
  std::string golden;      // relative to tests/fixtures/
  std::string logits_key;  // field of golden.json holding the logits
  double atol;             // max |gemmax - reference| over every logit, scalar kernels
  double atol_int8 = 0;    // the same with int8-activation kernels (0: same as atol)
  double atol_bf16 = 0;    // the same with bf16-activation kernels (AVX512-BF16 CPUs; 0: atol)
};

// Tolerances: f32 models differ from torch only in summation order (~1e-6 relative per op, seven
// layers): observed max errors are ~1e-5, so 2e-4 leaves headroom while catching any real mistake
// (a wrong norm, rope or mask moves logits by >1e-2). softcap_ropescale has logits ~x10 larger.
// Q8_0 checkpoints compare with the dequantized-weight reference: exact up to summation order with
// the scalar kernels; the AVX2 kernels also round activations to int8 per 32 values (as llama.cpp
// does), ~0.4% per matmul, which seven random layers amplify to ~0.3 on logits of std 2.7 / max 15.
// BF16 checkpoints on AVX512-BF16 CPUs: the vdpbf16ps kernels round activations to bf16 (as
// llama.cpp does), at most 2^-9 relative per value, a quarter of the int8 rounding's worst case;
// observed 0.03 on these logits, so 0.15.
std::vector<GoldenCase> cases() {
  return {
      {"base_safetensors", "tiny/base", "tiny/base/golden.json", "logits", 2e-4},
      {"base_gguf_f32", "tiny/base/model.gguf", "tiny/base/golden.json", "logits", 2e-4},
      {"base_gguf_q8_0", "tiny/base/model-q8_0.gguf", "tiny/base/golden-q8_0.json", "logits", 2e-4,
       0.6},
      {"sharded", "tiny/sharded", "tiny/sharded/golden.json", "logits", 2e-4},
      {"softcap_ropescale_safetensors", "tiny/softcap_ropescale",
       "tiny/softcap_ropescale/golden.json", "logits", 8e-3},
      {"softcap_ropescale_gguf", "tiny/softcap_ropescale/model.gguf",
       "tiny/softcap_ropescale/golden.json", "logits", 8e-3},
      {"bf16_safetensors", "tiny/bf16", "tiny/bf16/golden.json", "logits", 2e-4, 0, 0.15},
      {"bf16_gguf", "tiny/bf16/model.gguf", "tiny/bf16/golden.json", "logits_unrounded_embed_scale",
       2e-4, 0, 0.15},
      {"multimodal_layout_safetensors", "tiny/multimodal_layout",
       "tiny/multimodal_layout/golden.json", "logits", 2e-4},
      {"multimodal_layout_gguf", "tiny/multimodal_layout/model.gguf",
       "tiny/multimodal_layout/golden.json", "logits", 2e-4},
  };
}

class GoldenLogits : public ::testing::TestWithParam<std::tuple<GoldenCase, KernelPath>> {
 protected:
  void TearDown() override { set_kernel_path(saved_); }
  KernelPath saved_ = kernel_path();
};

TEST_P(GoldenLogits, MatchTransformersAtEveryPosition) {
  const auto& [c, path] = GetParam();
  if (!kernel_path_supported(path)) GTEST_SKIP() << "CPU cannot run " << kernel_path_name(path);
  set_kernel_path(path);
  double atol = (path != KernelPath::kScalar && c.atol_int8 > 0) ? c.atol_int8 : c.atol;
  if (path != KernelPath::kScalar && c.atol_bf16 > 0 && cpu_features().has_avx512_bf16())
    atol = c.atol_bf16;
  auto ckpt = Gemma3Checkpoint::open(fixture(c.model));
  const nlohmann::json golden = load_json(fixture(c.golden));
  Gemma3Model model(ckpt->config(), ckpt->weights(), 2);
  PagedKVCache cache(model.kv_params(), 256);
  double worst = 0.0;
  for (size_t p = 0; p < golden["prompts"].size(); ++p) {
    const auto prompt = golden["prompts"][p].get<std::vector<int32_t>>();
    const auto got = all_logits(model, prompt, cache);
    const auto& want = golden[c.logits_key][p];
    ASSERT_EQ(got.size(), want.size());
    for (size_t t = 0; t < got.size(); ++t) {
      ASSERT_EQ(got[t].size(), want[t].size());
      for (size_t v = 0; v < got[t].size(); ++v)
        worst =
            std::max(worst, std::abs(static_cast<double>(got[t][v]) - want[t][v].get<double>()));
    }
  }
  RecordProperty("max_abs_diff", std::to_string(worst));
  std::printf("[ %s/%s ] max |logit diff| = %.3g (atol %.3g)\n", c.name.c_str(),
              kernel_path_name(path), worst, atol);
  EXPECT_LE(worst, atol);
}

INSTANTIATE_TEST_SUITE_P(TinyModels, GoldenLogits,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(KernelPath::kScalar,
                                                              KernelPath::kAvx2)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  kernel_path_name(std::get<1>(info.param));
                         });

TEST(GoldenLogits, Bf16CheckpointUsesBf16RoundedEmbedScale) {
  auto ckpt = Gemma3Checkpoint::open(fixture("tiny/bf16"));
  const nlohmann::json golden = load_json(fixture("tiny/bf16/golden.json"));
  EXPECT_EQ(ckpt->config().embed_scale(), golden["embed_scale"].get<float>());
  auto gguf = Gemma3Checkpoint::open(fixture("tiny/bf16/model.gguf"));
  EXPECT_EQ(gguf->config().embed_scale(),
            std::sqrt(static_cast<float>(gguf->config().hidden_size)));  // llama.cpp keeps f32
}

}  // namespace
}  // namespace gemmax
