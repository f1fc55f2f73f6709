// The continuous-batching engine on the tiny model fixture (vocab 512, context 256, 7 layers with a
// sliding window of 4): results must not depend on what else is in the batch.
#include "pipeline/engine.h"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "model/gemma3_weights.h"

namespace gemmax {
namespace {

struct Result {
  std::vector<int32_t> ids;
  std::string text;
  std::vector<TokenLogprob> logprobs, prompt_logprobs;
  FinishReason finish = FinishReason::kNone;
  int events_after_finish = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ =
        Gemma3Checkpoint::open(std::string(GEMMAX_SOURCE_DIR) + "/tests/fixtures/tiny/base")
            .release();
    model_ = new Gemma3Model(checkpoint_->config(), checkpoint_->weights(), 1);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete checkpoint_;
  }

  // Submits into `engine`, collecting events into results_[id].
  uint64_t submit(Engine& engine, std::vector<int32_t> prompt, SamplingParams p) {
    auto* results = &results_;
    const uint64_t id =
        engine.submit({std::move(prompt), std::move(p), 0}, [results](const GenerationEvent& ev) {
          Result& r = (*results)[ev.request_id];
          if (r.finish != FinishReason::kNone) ++r.events_after_finish;
          r.ids.insert(r.ids.end(), ev.ids.begin(), ev.ids.end());
          r.text += ev.text;
          r.logprobs.insert(r.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
          r.prompt_logprobs.insert(r.prompt_logprobs.end(), ev.prompt_logprobs.begin(),
                                   ev.prompt_logprobs.end());
          if (ev.finish != FinishReason::kNone) r.finish = ev.finish;
          if (!ev.error.empty()) ADD_FAILURE() << ev.error;
        });
    return id;
  }
  static void drain(Engine& engine) {
    for (int guard = 0; engine.step(); ++guard)
      ASSERT_LT(guard, 100000) << "the engine never went idle";
  }
  // Runs one request alone in a fresh engine.
  Result alone(std::vector<int32_t> prompt, SamplingParams p) {
    Engine engine(*model_, nullptr, {});
    const uint64_t id = submit(engine, std::move(prompt), std::move(p));
    results_.erase(id);  // ids restart in every engine
    drain(engine);
    return results_.at(id);
  }

  static std::vector<std::vector<int32_t>> prompts(int count, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<std::vector<int32_t>> out;
    for (int i = 0; i < count; ++i) {
      std::vector<int32_t> p(static_cast<size_t>(3 + (i * 13) % 60));
      for (int32_t& t : p) t = static_cast<int32_t>(3 + rng() % 509);
      out.push_back(p);
    }
    return out;
  }
  static SamplingParams greedy(int max_tokens) {
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;  // the random tiny model would otherwise stop at arbitrary points
    return p;
  }

  static inline Gemma3Checkpoint* checkpoint_ = nullptr;
  static inline Gemma3Model* model_ = nullptr;
  std::map<uint64_t, Result> results_;
};

// The plain loop the engine must agree with: whole prompt, then one token at a time.
std::vector<int32_t> reference_greedy(Gemma3Model& model, const std::vector<int32_t>& prompt,
                                      int n) {
  PagedKVCache cache(model.kv_params(), 200);
  const SeqId seq = cache.add_sequence();
  std::vector<int32_t> out;
  std::vector<int32_t> feed = prompt;
  for (int i = 0; i < n; ++i) {
    Gemma3Inputs in;
    in.add_row(seq, feed);
    const Gemma3Outputs o = model.execute(in, cache);
    const float* row = o.row(0);
    const int32_t next = static_cast<int32_t>(std::max_element(row, row + o.vocab_size) - row);
    out.push_back(next);
    feed = {next};
  }
  return out;
}

TEST_F(EngineTest, AloneMatchesThePlainGreedyLoop) {
  const auto p = prompts(3, 1);
  for (const auto& prompt : p) {
    const Result r = alone(prompt, greedy(12));
    EXPECT_EQ(r.ids, reference_greedy(*model_, prompt, 12));
    EXPECT_EQ(r.finish, FinishReason::kLength);
  }
}

// EngineOptions::kv_dtype reaches the cache: an F16 pool of the default size holds twice the pages
// of an F32 one, and a busy batch over it still decodes every request as it does alone (the F16
// attention kernels keep a token's result independent of its batch too).
TEST_F(EngineTest, F16KvCacheHalvesBytesAndKeepsBatchInvariance) {
  Engine f32(*model_, nullptr, {});
  Engine f16(*model_, nullptr, {.kv_dtype = DType::kF16});
  EXPECT_EQ(f16.cache().params().dtype, DType::kF16);
  EXPECT_EQ(f16.stats().kv_pages_total, 2 * f32.stats().kv_pages_total);
  const auto p = prompts(4, 3);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& prompt : p) {
    Engine alone_f16(*model_, nullptr, {.kv_dtype = DType::kF16});
    const uint64_t id = submit(alone_f16, prompt, greedy(12));
    drain(alone_f16);
    expected.push_back(results_.at(id).ids);
    results_.clear();
  }
  Engine busy(*model_, nullptr, {.max_seqs = 4, .max_batch_tokens = 24, .kv_dtype = DType::kF16});
  std::vector<uint64_t> ids;
  for (const auto& prompt : p) ids.push_back(submit(busy, prompt, greedy(12)));
  drain(busy);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_EQ(results_.at(ids[i]).ids, expected[i]) << i;
}

TEST_F(EngineTest, BusyBatchGreedyEqualsAlone) {
  const auto p = prompts(10, 2);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& prompt : p) expected.push_back(alone(prompt, greedy(20)).ids);
  results_.clear();
  // A small token budget forces chunked prefill mixed with decode rows; late submissions join a
  // batch that is already decoding.
  Engine engine(*model_, nullptr, {.max_seqs = 6, .max_batch_tokens = 24});
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < p.size(); ++i) {
    ids.push_back(submit(engine, p[i], greedy(20)));
    if (i % 3 == 2)
      for (int k = 0; k < 4; ++k) engine.step();
  }
  drain(engine);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(results_.at(ids[i]).ids, expected[i]) << "request " << i;
    EXPECT_EQ(results_.at(ids[i]).events_after_finish, 0);
  }
  EXPECT_EQ(engine.cache().used_pages(), 0);
  EXPECT_EQ(engine.cache().num_sequences(), 0);
}

TEST_F(EngineTest, SeededSamplingIsTheSameInABusyBatch) {
  SamplingParams s;
  s.temperature = 3.0;  // the tiny random model is very peaked; flatten it so seeds matter
  s.top_p = 0.99;
  s.seed = 42;
  s.max_tokens = 16;
  s.ignore_eos = true;
  const auto p = prompts(4, 3);
  const Result solo = alone(p[0], s);
  results_.clear();
  Engine engine(*model_, nullptr, {.max_batch_tokens = 16});
  const uint64_t id = submit(engine, p[0], s);
  for (size_t i = 1; i < p.size(); ++i) submit(engine, p[i], s);
  drain(engine);
  EXPECT_EQ(results_.at(id).ids, solo.ids);
  EXPECT_EQ(alone(p[0], s).ids, solo.ids);
  s.seed = 43;
  EXPECT_NE(alone(p[0], s).ids, solo.ids);
}

TEST_F(EngineTest, PreemptionUnderATinyPoolLosesNothing) {
  const auto p = prompts(6, 4);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& prompt : p) expected.push_back(alone(prompt, greedy(60)).ids);
  results_.clear();
  // 40 pages: about two sequences of 100 tokens (global layers need one page per 16 tokens).
  Engine engine(*model_, nullptr, {.max_seqs = 6, .max_batch_tokens = 64, .kv_pages = 40});
  std::vector<uint64_t> ids;
  for (const auto& prompt : p) ids.push_back(submit(engine, prompt, greedy(60)));
  drain(engine);
  EXPECT_GT(engine.stats().preemptions, 0);
  // 13 with this workload; far more would mean sequences are readmitted only to be preempted again.
  EXPECT_LT(engine.stats().preemptions, 40);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(results_.at(ids[i]).ids, expected[i]) << "request " << i;
    EXPECT_EQ(results_.at(ids[i]).finish, FinishReason::kLength);
  }
  EXPECT_EQ(engine.cache().used_pages(), 0);
}

TEST_F(EngineTest, ASequenceOutgrowingThePoolEndsWithLength) {
  const auto prompt = prompts(1, 8)[0];
  const std::vector<int32_t> full = alone(prompt, greedy(150)).ids;
  results_.clear();
  Engine engine(*model_, nullptr, {.kv_pages = 14});
  const uint64_t id = submit(engine, prompt, greedy(150));
  drain(engine);
  const Result& r = results_.at(id);
  EXPECT_EQ(r.finish, FinishReason::kLength);
  ASSERT_LT(r.ids.size(), full.size());
  ASSERT_GT(r.ids.size(), 0u);
  EXPECT_TRUE(std::equal(r.ids.begin(), r.ids.end(), full.begin()));  // a prefix, not garbage
  EXPECT_EQ(engine.cache().used_pages(), 0);
}

TEST_F(EngineTest, CancellationFreesPagesAndEndsTheRequest) {
  const auto p = prompts(3, 5);
  Engine engine(*model_, nullptr, {.max_seqs = 2});
  const uint64_t a = submit(engine, p[0], greedy(100));
  const uint64_t b = submit(engine, p[1], greedy(100));
  const uint64_t c = submit(engine, p[2], greedy(100));  // waits: max_seqs 2
  for (int i = 0; i < 5; ++i) engine.step();
  const int64_t used = engine.cache().used_pages();
  ASSERT_GT(used, 0);
  engine.cancel(a);
  engine.cancel(c);
  engine.step();
  EXPECT_EQ(results_.at(a).finish, FinishReason::kCancelled);
  EXPECT_EQ(results_.at(c).finish, FinishReason::kCancelled);
  EXPECT_TRUE(results_.at(c).ids.empty());
  EXPECT_EQ(engine.cache().num_sequences(), 1);
  EXPECT_LT(engine.cache().used_pages(), used);
  engine.cancel(a);  // already finished: nothing happens
  drain(engine);
  EXPECT_EQ(results_.at(b).finish, FinishReason::kLength);
  EXPECT_EQ(results_.at(a).events_after_finish, 0);
  EXPECT_EQ(engine.cache().used_pages(), 0);
  EXPECT_TRUE(engine.idle());
}

TEST_F(EngineTest, StopIdEndsWithStopAndIsNotEmitted) {
  SamplingParams s = greedy(10);
  s.ignore_eos = false;
  s.logit_bias = {{1, 100.0}};  // force <eos> (id 1 in the fixture's config)
  const Result r = alone(prompts(1, 6)[0], s);
  EXPECT_EQ(r.finish, FinishReason::kStop);
  EXPECT_TRUE(r.ids.empty());
}

// A 512-token vocabulary for the tiny model: id i >= 3 decodes to a letter and its id ("c99").
Tokenizer tiny_tokenizer() {
  TokenizerSpec spec;
  spec.source = "engine_test";
  spec.tokens = {"<pad>", "<eos>", "<bos>"};
  for (int i = 3; i < 512; ++i)
    spec.tokens.push_back(fmt::format("{:c}{}", static_cast<char>('a' + i % 26), i));
  spec.added.assign(512, 0);
  spec.added[0] = spec.added[1] = spec.added[2] = 1;
  spec.special = spec.added;
  spec.model_vocab_size = 512;
  spec.bos_id = 2;
  spec.eos_id = 1;
  spec.stop_ids = {1};
  return Tokenizer(std::move(spec));
}

TEST_F(EngineTest, StopStringAcrossTokensIsCutAndNeverStreamed) {
  const Tokenizer tok = tiny_tokenizer();
  const auto prompt = prompts(1, 9)[0];
  std::string plain;
  {
    Engine engine(*model_, &tok, {});
    engine.submit({prompt, greedy(12), 0}, [&](const GenerationEvent& ev) { plain += ev.text; });
    drain(engine);
  }
  ASSERT_EQ(plain, tok.decode(alone(prompt, greedy(12)).ids));  // the text is the ids' decoding
  // A stop string made of the end of token 3's text and the start of token 4's.
  const std::vector<int32_t> ids = alone(prompt, greedy(12)).ids;
  const std::string t3 = tok.decode(std::vector<int32_t>{ids[3]}),
                    t4 = tok.decode(std::vector<int32_t>{ids[4]});
  const std::string stop = t3.substr(1) + t4.substr(0, 1);
  const size_t at = plain.find(stop);
  ASSERT_NE(at, std::string::npos);
  SamplingParams p = greedy(12);
  p.stop = {stop};
  std::string streamed;
  FinishReason finish = FinishReason::kNone;
  Engine engine(*model_, &tok, {});
  engine.submit({prompt, p, 0}, [&](const GenerationEvent& ev) {
    // No event may carry the first character of the stop string past the cut point.
    EXPECT_LE(streamed.size() + ev.text.size(), at) << "text past the stop string was streamed";
    streamed += ev.text;
    if (ev.finish != FinishReason::kNone) finish = ev.finish;
  });
  drain(engine);
  EXPECT_EQ(streamed, plain.substr(0, at));
  EXPECT_EQ(finish, FinishReason::kStop);
  EXPECT_EQ(engine.cache().used_pages(), 0);
}

TEST_F(EngineTest, ContextLengthEndsWithLength) {
  std::vector<int32_t> prompt(250, 7);  // context 256: 6 tokens fit
  const Result r = alone(prompt, greedy(100));
  EXPECT_EQ(r.ids.size(), 6u);
  EXPECT_EQ(r.finish, FinishReason::kLength);
}

TEST_F(EngineTest, LogprobsMatchTheModel) {
  const auto prompt = prompts(1, 7)[0];
  SamplingParams s = greedy(3);
  s.logprobs = 2;
  s.prompt_logprobs = 1;
  const Result r = alone(prompt, s);
  ASSERT_EQ(r.logprobs.size(), 3u);
  for (const TokenLogprob& lp : r.logprobs) {
    ASSERT_EQ(lp.top.size(), 2u);
    EXPECT_EQ(lp.top[0].first, lp.id);  // greedy picks the most likely
    EXPECT_FLOAT_EQ(lp.top[0].second, lp.logprob);
    EXPECT_LE(lp.top[1].second, lp.logprob);
  }
  // Prompt logprobs: every prompt token after the first, against one full-prompt forward pass.
  ASSERT_EQ(r.prompt_logprobs.size(), prompt.size() - 1);
  PagedKVCache cache(model_->kv_params(), 100);
  Gemma3Inputs in;
  in.return_logits = ReturnLogits::kAll;
  in.add_row(cache.add_sequence(), prompt);
  const Gemma3Outputs o = model_->execute(in, cache);
  for (size_t i = 0; i + 1 < prompt.size(); ++i) {
    const TokenLogprob ref = token_logprob({o.row(static_cast<int64_t>(i)), 512}, prompt[i + 1], 1);
    EXPECT_EQ(r.prompt_logprobs[i].id, prompt[i + 1]);
    // Chunked (32) versus one pass: the same math per row, tolerance only for summation order.
    EXPECT_NEAR(r.prompt_logprobs[i].logprob, ref.logprob, 1e-4) << i;
  }
}

TEST_F(EngineTest, SubmitRejectsBadRequests) {
  Engine engine(*model_, nullptr, {.max_waiting = 2});
  EXPECT_THROW(engine.submit({{}, greedy(1), 0}, [](const GenerationEvent&) {}),
               std::invalid_argument);
  EXPECT_THROW(
      engine.submit({std::vector<int32_t>(256, 5), greedy(1), 0}, [](const GenerationEvent&) {}),
      std::invalid_argument);
  EXPECT_THROW(engine.submit({{5, 512}, greedy(1), 0}, [](const GenerationEvent&) {}),
               std::invalid_argument);
  SamplingParams bad = greedy(1);
  bad.top_p = 2;
  EXPECT_THROW(engine.submit({{5}, bad, 0}, [](const GenerationEvent&) {}), std::invalid_argument);
  SamplingParams stop = greedy(1);
  stop.stop = {"x"};  // no tokenizer
  EXPECT_THROW(engine.submit({{5}, stop, 0}, [](const GenerationEvent&) {}), std::invalid_argument);
  engine.submit({{5}, greedy(1), 0}, [](const GenerationEvent&) {});
  engine.submit({{5}, greedy(1), 0}, [](const GenerationEvent&) {});
  EXPECT_THROW(engine.submit({{5}, greedy(1), 0}, [](const GenerationEvent&) {}), QueueFullError);
  Engine tiny(*model_, nullptr, {.kv_pages = 10});
  EXPECT_THROW(
      tiny.submit({std::vector<int32_t>(200, 5), greedy(1), 0}, [](const GenerationEvent&) {}),
      std::invalid_argument);
}

}  // namespace
}  // namespace gemmax
