// Gemma3Model: one forward step of Gemma 3 over a ragged batch and a paged KV cache, in f32,
// following transformers' Gemma3ForCausalLM exactly. The pass reads top to bottom in execute(); the
// heavy lifting is in kernels/ (matmul per weight format, norms, rope, activation).
#pragma once

#include <initializer_list>
#include <memory>
#include <vector>

#include "kernels/thread_pool.h"
#include "kv_cache/paged_kv_cache.h"
#include "model/gemma3_inputs.h"
#include "model/gemma3_weights.h"
#include "model/step_profile.h"

namespace gemmax {

class Gemma3Model {
 public:
  // `threads` 0 = all cores.
  Gemma3Model(const Gemma3Config& config, const Gemma3Weights& weights, int threads = 0);

  const Gemma3Config& config() const { return config_; }
  // KV cache parameters for this model (f32 by default).
  KVCacheParams kv_params(DType kv_dtype = DType::kF32, int page_size = 16) const;

  // Runs every row of `inputs` through the model, appending their K/V to `cache` (reserving pages
  // as needed: KVCacheFullError leaves the cache unchanged for the row that failed) and committing
  // them. Throws std::invalid_argument for malformed inputs (bad offsets, token ids out of range, a
  // row that would pass max_position_embeddings).
  Gemma3Outputs execute(const Gemma3Inputs& inputs, PagedKVCache& cache);
  // The same, into `out`, reusing its buffers: a decode loop that keeps one Gemma3Outputs
  // allocates no logits per step (a fresh 262144-float vector was allocated and zeroed each step:
  // 120-180 us, 2-3% of a 270M decode step). `out` is unspecified after an exception.
  void execute(const Gemma3Inputs& inputs, PagedKVCache& cache, Gemma3Outputs& out);

  // Attention takes a token's keys in chunks of this many positions (partial softmaxes merged), so
  // a decode step can split one token's attention over the threads. The split depends only on the
  // position, so results never depend on the batch. Default 128; tests use small values to
  // exercise the merge on short prompts.
  void set_attention_key_chunk(int64_t keys);

  // Times every later step phase by phase into `profile` (not owned; nullptr stops). For
  // measurements (`gemmax bench --profile`): a clock read per phase, ~10 per layer.
  void set_profile(StepProfile* profile) { profile_ = profile; }

 private:
  struct Scratch {
    std::vector<float> x, h, q, k, v, attn, gate, up, hidden_out;
    std::vector<int64_t> row_of;    // input row of each token
    std::vector<int64_t> pos;       // position of each token in its sequence
    std::vector<int64_t> selected;  // the tokens whose logits were asked for
    std::vector<float> partials;    // attention: per (token, head, key chunk) m, l, o[head_dim]
    // RoPE cos | sin of each token's position, head_dim floats per token, for the sliding and the
    // global layers' frequencies: computed once per step, not once per layer.
    std::vector<float> rope_local, rope_global;
  };
  void validate(const Gemma3Inputs& inputs, const PagedKVCache& cache) const;
  void embed(const std::vector<int32_t>& tokens);
  void rope_tables(const std::vector<int64_t>& pos);
  void attention_block(int layer, const Gemma3Inputs& in, const std::vector<int64_t>& pos,
                       PagedKVCache& cache);
  void mlp_block(int layer, int64_t n);
  void attend(int layer, const Gemma3Inputs& in, const std::vector<int64_t>& pos,
              const PagedKVCache& cache);
  void attend_chunk(int layer, SeqId seq, int64_t t, int64_t first_head, int64_t n_heads,
                    int64_t key_begin, int64_t key_end, const PagedKVCache& cache, float* partial,
                    int64_t head_stride, bool stream);
  template <class Row>
  void attend_rows(const float* q, int64_t n_heads, const Row* const* keys,
                   const Row* const* values, int64_t n_keys, float scaling, float* partial,
                   int64_t head_stride, bool stream) const;
  void merge_chunks(const float* partial, int64_t chunks, float* out) const;
  int64_t key_begin(int layer, int64_t p) const;
  int64_t chunks_for(int64_t n_keys) const;  // key chunks of a token that sees n_keys keys
  // First key (counted from the token's first) of chunk c of `chunks`; c == chunks gives n_keys.
  static int64_t chunk_start(int64_t n_keys, int64_t chunks, int64_t c);
  void logits(const Gemma3Inputs& in, const std::vector<int64_t>& pos, Gemma3Outputs& out);
  void lap_matmul(StepPhase phase, std::initializer_list<const TensorView*> tensors, int64_t rows);
  int64_t visible_keys(int layer, const std::vector<int64_t>& pos) const;
  int64_t attention_multiply_adds(int layer, const std::vector<int64_t>& pos) const;
  int64_t kv_bytes_read(int layer, const std::vector<int64_t>& pos,
                        const PagedKVCache& cache) const;

  Gemma3Config config_;
  const Gemma3Weights& weights_;
  ThreadPool pool_;
  std::vector<float> inv_freq_local_, inv_freq_global_;
  Scratch s_;
  int64_t key_chunk_ = 128;
  StepProfile* profile_ = nullptr;
  PhaseClock clock_;  // this step's, on profile_
};

}  // namespace gemmax
