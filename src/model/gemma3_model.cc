#include "model/gemma3_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/attention_kernels.h"
#include "kernels/dequantize.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"

namespace gemmax {
namespace {

// inv_freq[i] = 1 / base^(2i / dim), computed in f32 like transformers' default RoPE init, then
// divided by the linear scaling factor.
std::vector<float> rope_inv_freq(int head_dim, double base, double linear_factor) {
  std::vector<float> f(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    f[i] = 1.0f / std::pow(static_cast<float>(base), exponent);
    f[i] /= static_cast<float>(linear_factor);
  }
  return f;
}

// Per-token RMSNorm, split over the pool by tokens (a prefill chunk has hundreds).
void rms_norm_rows(const float* x, const std::vector<float>& gamma, int64_t rows, int64_t n,
                   float eps, float* out, ThreadPool& pool) {
  pool.parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) rms_norm(x + r * n, gamma.data(), n, eps, out + r * n);
  });
}

// Residual: x = x + post_norm(y), fused per token so each row is touched once while in cache.
void add_normed_rows(float* x, float* y, const std::vector<float>& gamma, int64_t rows, int64_t n,
                     float eps, ThreadPool& pool) {
  pool.parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* yr = y + r * n;
      rms_norm(yr, gamma.data(), n, eps, yr);
      for (int64_t i = 0; i < n; ++i) x[r * n + i] += yr[i];
    }
  });
}

}  // namespace

Gemma3Model::Gemma3Model(const Gemma3Config& config, const Gemma3Weights& weights, int threads)
    : config_(config), weights_(weights), pool_(threads) {
  config_.validate();
  inv_freq_local_ = rope_inv_freq(config_.head_dim, config_.rope_local_base_freq, 1.0);
  inv_freq_global_ = rope_inv_freq(config_.head_dim, config_.rope_theta,
                                   config_.rope_scaling ? config_.rope_scaling->factor : 1.0);
}

namespace {

// Pointers to kv head `head`'s K and V rows in a run of cache blocks, in position order.
template <class Row>
void row_pointers(const std::vector<KVBlock>& blocks, int64_t head, std::vector<const Row*>& keys,
                  std::vector<const Row*>& values) {
  keys.clear();
  values.clear();
  for (const KVBlock& b : blocks)
    for (int64_t i = 0; i < b.n; ++i) {
      keys.push_back(reinterpret_cast<const Row*>(b.k_row(i, head)));
      values.push_back(reinterpret_cast<const Row*>(b.v_row(i, head)));
    }
}

}  // namespace

KVCacheParams Gemma3Model::kv_params(DType kv_dtype, int page_size) const {
  KVCacheParams p;
  p.dtype = kv_dtype;
  p.n_kv_heads = config_.num_key_value_heads;
  p.head_dim = config_.head_dim;
  p.page_size = page_size;
  p.num_layers = config_.num_hidden_layers;
  p.layer_is_sliding = config_.layer_is_sliding;
  p.sliding_window = config_.sliding_window;
  return p;
}

void Gemma3Model::validate(const Gemma3Inputs& in, const PagedKVCache& cache) const {
  const auto& off = in.input_row_offsets;
  if (off.empty() || off.front() != 0 || off.back() != static_cast<int64_t>(in.tokens.size()))
    throw std::invalid_argument("input_row_offsets must start at 0 and end at the token count");
  if (static_cast<int64_t>(in.seq_ids.size()) != in.num_rows())
    throw std::invalid_argument("seq_ids must have one entry per row");
  for (int64_t r = 0; r < in.num_rows(); ++r) {
    if (off[r + 1] < off[r]) throw std::invalid_argument("input_row_offsets must not decrease");
    const SeqId seq = in.seq_ids[r];
    if (!cache.contains(seq))
      throw std::invalid_argument("row " + std::to_string(r) + ": unknown KV sequence");
    for (int64_t q = r + 1; q < in.num_rows(); ++q)
      if (in.seq_ids[q] == seq) throw std::invalid_argument("a sequence appears in two rows");
    const int64_t end = cache.length(seq) + off[r + 1] - off[r];
    if (end > config_.max_position_embeddings)
      throw std::invalid_argument("row " + std::to_string(r) + " reaches position " +
                                  std::to_string(end) + ", past max_position_embeddings " +
                                  std::to_string(config_.max_position_embeddings));
  }
  for (int32_t t : in.tokens)
    if (t < 0 || t >= config_.vocab_size)
      throw std::invalid_argument("token id " + std::to_string(t) +
                                  " is outside the vocabulary (0.." +
                                  std::to_string(config_.vocab_size - 1) + ")");
  if (in.return_logits == ReturnLogits::kVariable && in.return_n_logits < 1)
    throw std::invalid_argument("return_n_logits must be at least 1");
}

Gemma3Outputs Gemma3Model::execute(const Gemma3Inputs& in, PagedKVCache& cache) {
  Gemma3Outputs out;
  execute(in, cache, out);
  return out;
}

void Gemma3Model::execute(const Gemma3Inputs& in, PagedKVCache& cache, Gemma3Outputs& out) {
  clock_ = PhaseClock(profile_);
  validate(in, cache);
  const int64_t n = static_cast<int64_t>(in.tokens.size());
  std::vector<int64_t>& pos = s_.pos;  // scratch that only grows: no allocation per decode step
  pos.resize(n);
  int64_t pages = 0;
  for (int64_t r = 0; r < in.num_rows(); ++r) {
    const int64_t start = cache.length(in.seq_ids[r]);
    for (int64_t i = in.input_row_offsets[r]; i < in.input_row_offsets[r + 1]; ++i)
      pos[i] = start + (i - in.input_row_offsets[r]);
    pages +=
        cache.pages_needed(in.seq_ids[r], in.input_row_offsets[r + 1] - in.input_row_offsets[r]);
  }
  if (pages > cache.free_pages())
    throw KVCacheFullError("step needs " + std::to_string(pages) + " KV pages, " +
                           std::to_string(cache.free_pages()) + " are free");
  for (int64_t r = 0; r < in.num_rows(); ++r)
    cache.reserve(in.seq_ids[r], in.input_row_offsets[r + 1] - in.input_row_offsets[r]);

  embed(in.tokens);
  rope_tables(pos);
  clock_.lap(StepPhase::kSetup);
  for (int layer = 0; layer < config_.num_hidden_layers; ++layer) {
    attention_block(layer, in, pos, cache);
    mlp_block(layer, n);
  }
  for (int64_t r = 0; r < in.num_rows(); ++r)
    cache.commit(in.seq_ids[r], in.input_row_offsets[r + 1] - in.input_row_offsets[r]);
  clock_.lap(StepPhase::kKvStore);
  logits(in, pos, out);
}

// Ends a matmul phase of the step profile: the weight bytes it read and its multiply-adds over
// `rows` activation rows (weight elements x rows).
void Gemma3Model::lap_matmul(StepPhase phase, std::initializer_list<const TensorView*> tensors,
                             int64_t rows) {
  if (profile_ == nullptr) return;
  int64_t bytes = 0, elements = 0;
  for (const TensorView* t : tensors) {
    bytes += t->rows() * t->row_bytes();
    elements += t->rows() * t->cols();
  }
  clock_.lap(phase, bytes, elements * rows);
}

// The keys one layer's tokens see, summed over the tokens (windowed on sliding layers).
int64_t Gemma3Model::visible_keys(int layer, const std::vector<int64_t>& pos) const {
  int64_t keys = 0;
  for (int64_t p : pos) keys += p + 1 - key_begin(layer, p);
  return keys;
}

// Multiply-adds of one layer's attention (for the step profile): every query head's scores and
// weighted values over the keys each token sees.
int64_t Gemma3Model::attention_multiply_adds(int layer, const std::vector<int64_t>& pos) const {
  if (profile_ == nullptr) return 0;
  return 2 * visible_keys(layer, pos) * config_.num_attention_heads * config_.head_dim;
}

// Bytes of cached K and V one layer's attention reads (for the step profile): both rows of every
// kv head for every key each token sees.
int64_t Gemma3Model::kv_bytes_read(int layer, const std::vector<int64_t>& pos,
                                   const PagedKVCache& cache) const {
  if (profile_ == nullptr) return 0;
  const int64_t row =
      config_.num_key_value_heads * dtype_row_bytes(cache.params().dtype, config_.head_dim);
  return 2 * visible_keys(layer, pos) * row;
}

// x = embed_tokens[token] * sqrt(hidden_size)
void Gemma3Model::embed(const std::vector<int32_t>& tokens) {
  const int64_t h = config_.hidden_size;
  s_.x.resize(tokens.size() * h);
  const float scale = config_.embed_scale();
  for (size_t t = 0; t < tokens.size(); ++t) {
    float* row = s_.x.data() + t * h;
    dequantize_row(weights_.embed_tokens.dtype, weights_.embed_tokens.row(tokens[t]), row, h);
    for (int64_t i = 0; i < h; ++i) row[i] *= scale;
  }
}

// The cos | sin tables of every token's position for both kinds of layer (rope_cos_sin, as each
// layer computed them before: the same values).
void Gemma3Model::rope_tables(const std::vector<int64_t>& pos) {
  const int64_t n = static_cast<int64_t>(pos.size()), hd = config_.head_dim;
  s_.rope_local.resize(n * hd);
  s_.rope_global.resize(n * hd);
  pool_.parallel_for(n, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const auto p = static_cast<float>(pos[t]);
      rope_cos_sin(p, inv_freq_local_.data(), hd / 2, s_.rope_local.data() + t * hd);
      rope_cos_sin(p, inv_freq_global_.data(), hd / 2, s_.rope_global.data() + t * hd);
    }
  });
}

void Gemma3Model::attention_block(int layer, const Gemma3Inputs& in,
                                  const std::vector<int64_t>& pos, PagedKVCache& cache) {
  const Gemma3LayerWeights& w = weights_.layers[layer];
  const int64_t n = static_cast<int64_t>(in.tokens.size());
  const int64_t h = config_.hidden_size, hd = config_.head_dim;
  const int64_t nh = config_.num_attention_heads, nkv = config_.num_key_value_heads;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  s_.h.resize(n * h);
  s_.q.resize(n * nh * hd);
  s_.k.resize(n * nkv * hd);
  s_.v.resize(n * nkv * hd);

  rms_norm_rows(s_.x.data(), w.input_norm, n, h, eps, s_.h.data(), pool_);
  clock_.lap(StepPhase::kNorms);
  const MatmulOutput qkv[] = {
      {&w.q_proj, s_.q.data()}, {&w.k_proj, s_.k.data()}, {&w.v_proj, s_.v.data()}};
  matmul_fused(s_.h.data(), n, qkv, &pool_);
  lap_matmul(StepPhase::kQkv, {&w.q_proj, &w.k_proj, &w.v_proj}, n);

  // Per-head RMSNorm of q and k, then RoPE with the layer type's frequencies.
  const float* tables =
      config_.layer_is_sliding[layer] ? s_.rope_local.data() : s_.rope_global.data();
  pool_.parallel_for(n, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* cos_sin = tables + t * hd;  // shared by the token's heads
      for (int64_t head = 0; head < nh; ++head) {
        float* q = s_.q.data() + (t * nh + head) * hd;
        rms_norm(q, w.q_norm.data(), hd, eps, q);
        rope_rotate_half(q, hd, cos_sin);
      }
      for (int64_t head = 0; head < nkv; ++head) {
        float* k = s_.k.data() + (t * nkv + head) * hd;
        rms_norm(k, w.k_norm.data(), hd, eps, k);
        rope_rotate_half(k, hd, cos_sin);
      }
    }
  });
  clock_.lap(StepPhase::kRope);
  // Store every token's K/V first so later tokens of the same row attend to earlier ones.
  for (int64_t r = 0; r < in.num_rows(); ++r)
    for (int64_t t = in.input_row_offsets[r]; t < in.input_row_offsets[r + 1]; ++t)
      cache.store(in.seq_ids[r], layer, pos[t], s_.k.data() + t * nkv * hd,
                  s_.v.data() + t * nkv * hd);

  clock_.lap(StepPhase::kKvStore);
  attend(layer, in, pos, cache);
  clock_.lap(StepPhase::kAttention, kv_bytes_read(layer, pos, cache),
             attention_multiply_adds(layer, pos));
  matmul(s_.attn.data(), n, w.o_proj, s_.h.data(), &pool_);
  lap_matmul(StepPhase::kOutProj, {&w.o_proj}, n);
  add_normed_rows(s_.x.data(), s_.h.data(), w.post_attention_norm, n, h, eps, pool_);
  clock_.lap(StepPhase::kNorms);
}

// The n_keys keys a token sees (counted from its first) are cut into chunks of at most key_chunk_
// positions, each giving a partial softmax (max m, sum l, unnormalised output o) that merge_chunks
// combines. The split depends only on n_keys, never on the batch, so a token's result is the same
// whether its chunks run on one thread (prefill) or on several (decode).
void Gemma3Model::set_attention_key_chunk(int64_t keys) {
  if (keys < 1) throw std::invalid_argument("attention key chunk: must be at least 1");
  key_chunk_ = keys;
}

// ceil(n_keys / key_chunk_), made even when above one, in chunks of near-equal size: on 1-kv-head
// models (270M, 1B) a decode step's units are the chunks, and 5 chunks of 128 (a 513-640 key
// context) ran 3 + 2 on two threads where 6 of ~100 run 3 + 3.
int64_t Gemma3Model::chunks_for(int64_t n_keys) const {
  const int64_t chunks = (n_keys + key_chunk_ - 1) / key_chunk_;
  return chunks > 1 ? chunks + chunks % 2 : chunks;
}

int64_t Gemma3Model::chunk_start(int64_t n_keys, int64_t chunks, int64_t c) {
  return c * n_keys / chunks;
}

int64_t Gemma3Model::key_begin(int layer, int64_t p) const {
  return config_.layer_is_sliding[layer] ? std::max<int64_t>(0, p - config_.sliding_window + 1) : 0;
}

// Causal attention of every token over its sequence's cached K/V (windowed on sliding layers), GQA:
// query head `head` reads kv head head / (nh / nkv). Work is shared out in units of (token, heads,
// key chunk):
//  * prefill (many tokens), and a decode step of a model with enough kv groups to keep every
//    thread busy (4B: 4 kv heads): a unit is a token's whole kv group, whose query heads then read
//    each K/V row once; blocks of 16 such units run chunk by chunk, then merge;
//  * decode (few tokens): a unit is one head and one key chunk, so a single token still keeps every
//    thread busy; the chunks are merged in a second pass.
// Both run the same per-chunk and merge arithmetic, so the results are identical bit for bit.
void Gemma3Model::attend(int layer, const Gemma3Inputs& in, const std::vector<int64_t>& pos,
                         const PagedKVCache& cache) {
  const int64_t n = static_cast<int64_t>(in.tokens.size());
  const int64_t hd = config_.head_dim, nh = config_.num_attention_heads;
  const int64_t group = nh / config_.num_key_value_heads, rec = hd + 2;
  s_.attn.assign(n * nh * hd, 0.0f);
  s_.row_of.resize(n);
  int64_t max_chunks = 1;
  for (int64_t r = 0; r < in.num_rows(); ++r)
    for (int64_t t = in.input_row_offsets[r]; t < in.input_row_offsets[r + 1]; ++t) {
      s_.row_of[t] = r;
      max_chunks = std::max(max_chunks, chunks_for(pos[t] + 1 - key_begin(layer, pos[t])));
    }
  auto seq_of = [&](int64_t t) { return in.seq_ids[s_.row_of[t]]; };
  // A token alone in its row (a decode step) reads K/V cached by earlier steps, from memory: the
  // kernels prefetch ahead. A prompt's tokens share the keys just stored, which stay in cache.
  // Until session 17 the kv-group units never prefetched, which every 4B decode step (4 kv heads
  // fill both threads) and batched decodes of several sequences ran through: 4B Q4_0 at 512 + 64
  // tokens, 3 interleaved pairs, attention 6.08-6.25 -> 4.94-5.07 ms per token. Both branches
  // below follow this one rule (until session 19 the per-chunk units prefetched for every token,
  // also a short prompt's, whose keys were just stored); it changes prefetches only, not results.
  auto streams = [&](int64_t t) {
    const int64_t r = s_.row_of[t];
    return in.input_row_offsets[r + 1] - in.input_row_offsets[r] == 1;
  };
  if (n * (nh / group) >= 2 * pool_.size()) {
    // Units are numbered kv group by kv group (unit i: token i % n of group i / n), and a thread
    // runs its units in blocks of kUnitBlock consecutive tokens, chunk c of every token in turn:
    // neighbouring tokens' chunk c covers nearly the same keys, so all but the first read them
    // from L2, where token after token (all of its chunks, then the next token) read a global
    // layer's whole K/V from L3 each time. The chunks and their merge are the same, so are the
    // bits. Interleaved pairs, prefill tok/s: 270M Q4_0 at 4096 tokens 1019-1070 -> 1103-1104 (3),
    // 1B Q4_0 at 2048 262-264 -> 265-272 (3) and at 4096 246-248 -> 247-253 (2); 4B Q4_0 at 512
    // and 270M at 512 within noise.
    //
    // The pool's chunks are claimed in turn, and a prompt's later tokens attend to more keys: run
    // through the units from the last, so the largest chunks go first and the small ones even out
    // the finish (in token order the last chunk alone, ~15x the first, left one thread idle for
    // ~10% of the phase).
    constexpr int64_t kUnitBlock = 16;
    const int64_t groups = nh / group, n_units = n * groups;
    pool_.parallel_for(n_units, 1, [&](int64_t j0, int64_t j1) {
      const int64_t i0 = n_units - j1, i1 = n_units - j0;
      thread_local std::vector<float> partial;   // the block's chunk records, unit after unit
      thread_local std::vector<int64_t> offset;  // where each unit's records start
      thread_local std::vector<int64_t> chunks;  // each unit's key chunks
      for (int64_t b0 = i0; b0 < i1; b0 += kUnitBlock) {
        const int64_t b1 = std::min(i1, b0 + kUnitBlock), units = b1 - b0;
        offset.resize(units + 1);
        chunks.resize(units);
        offset[0] = 0;
        for (int64_t u = 0; u < units; ++u) {
          const int64_t p = pos[(b0 + u) % n];
          chunks[u] = chunks_for(p + 1 - key_begin(layer, p));
          offset[u + 1] = offset[u] + group * chunks[u] * rec;
        }
        partial.resize(offset[units]);
        const int64_t max_chunks = *std::max_element(chunks.begin(), chunks.end());
        for (int64_t c = 0; c < max_chunks; ++c)
          for (int64_t u = 0; u < units; ++u) {
            if (c >= chunks[u]) continue;
            const int64_t t = (b0 + u) % n, head = (b0 + u) / n * group, p = pos[t];
            const int64_t begin = key_begin(layer, p);
            attend_chunk(layer, seq_of(t), t, head, group,
                         begin + chunk_start(p + 1 - begin, chunks[u], c),
                         begin + chunk_start(p + 1 - begin, chunks[u], c + 1), cache,
                         partial.data() + offset[u] + c * rec, chunks[u] * rec, streams(t));
          }
        for (int64_t u = 0; u < units; ++u) {
          const int64_t t = (b0 + u) % n, head = (b0 + u) / n * group;
          for (int64_t h = 0; h < group; ++h)
            merge_chunks(partial.data() + offset[u] + h * chunks[u] * rec, chunks[u],
                         s_.attn.data() + (t * nh + head + h) * hd);
        }
      }
    });
    return;
  }
  // Decode: units of (token, heads, chunk) with the heads of a whole kv group when that still
  // gives every thread work (they then read each K/V row once), else one head each.
  // partials[((t * nh + head) * max_chunks + c) * rec].
  s_.partials.resize(n * nh * max_chunks * rec);
  const int64_t per_unit = n * (nh / group) * max_chunks >= 2 * pool_.size() ? group : 1;
  const int64_t head_units = nh / per_unit;
  pool_.parallel_for(n * head_units * max_chunks, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / (head_units * max_chunks), c = i % max_chunks;
      const int64_t head = i / max_chunks % head_units * per_unit;
      const int64_t p = pos[t], begin = key_begin(layer, p);
      const int64_t chunks = chunks_for(p + 1 - begin);
      if (c >= chunks) continue;
      attend_chunk(layer, seq_of(t), t, head, per_unit,
                   begin + chunk_start(p + 1 - begin, chunks, c),
                   begin + chunk_start(p + 1 - begin, chunks, c + 1), cache,
                   s_.partials.data() + ((t * nh + head) * max_chunks + c) * rec, max_chunks * rec,
                   streams(t));
    }
  });
  // Merging is ~1 us per token: one token's heads stay on this thread, a batch is split.
  pool_.parallel_for(n * nh, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t p = pos[i / nh];
      merge_chunks(s_.partials.data() + i * max_chunks * rec,
                   chunks_for(p + 1 - key_begin(layer, p)), s_.attn.data() + i * hd);
    }
  });
}

// Query heads [first_head, first_head + n_heads) of token t (one kv group) over keys [key_begin,
// key_end): per head, at partial + h * head_stride, the record m (max score), l (sum of
// exp(score - m)) and o[head_dim] (sum of exp(score - m) * value). `stream`: a decode step, whose
// K/V come from memory (the kernels prefetch ahead).
void Gemma3Model::attend_chunk(int layer, SeqId seq, int64_t t, int64_t first_head, int64_t n_heads,
                               int64_t key_begin, int64_t key_end, const PagedKVCache& cache,
                               float* partial, int64_t head_stride, bool stream) {
  const int64_t hd = config_.head_dim, nh = config_.num_attention_heads;
  const int64_t nkv = config_.num_key_value_heads, group = nh / nkv;
  const float scaling = 1.0f / std::sqrt(static_cast<float>(config_.query_pre_attn_scalar));
  // attn_logit_softcapping is read from the config but, as in transformers' Gemma 3 (the numerical
  // definition; Gemma 2 applied it), not applied: no Gemma 3 checkpoint sets it anyway.
  const DType kv_dtype = cache.params().dtype;
  const int64_t kv_head = first_head / group;
  // Per-thread buffers that only grow: no allocation per step once warm.
  thread_local std::vector<KVBlock> blocks;
  thread_local std::vector<const uint16_t*> keys16, values16;
  thread_local std::vector<const float*> keys32, values32;
  thread_local std::vector<const std::byte*> raw_keys, raw_values;  // BF16 rows as stored
  thread_local std::vector<float> converted;                        // ... and as f32
  const int64_t n_keys = key_end - key_begin;
  cache.blocks(seq, layer, key_begin, key_end, blocks);
  const float* q = s_.q.data() + (t * nh + first_head) * hd;
  // The kernels take the chunk's rows by pointer, across its pages, so they stream through them
  // in one pass (a call per 16-row page restarted their prefetch and tiles at every page).
  if (kv_dtype == DType::kF16) {  // converted in registers
    row_pointers(blocks, kv_head, keys16, values16);
    attend_rows(q, n_heads, keys16.data(), values16.data(), n_keys, scaling, partial, head_stride,
                stream);
    return;
  }
  if (kv_dtype == DType::kF32) {
    row_pointers(blocks, kv_head, keys32, values32);
  } else {  // BF16: dequantized once per chunk
    row_pointers(blocks, kv_head, raw_keys, raw_values);
    converted.resize(2 * n_keys * hd);
    keys32.resize(n_keys);
    values32.resize(n_keys);
    for (int64_t j = 0; j < n_keys; ++j) {
      float* k = converted.data() + j * hd;
      float* v = converted.data() + (n_keys + j) * hd;
      dequantize_row(kv_dtype, raw_keys[j], k, hd);
      dequantize_row(kv_dtype, raw_values[j], v, hd);
      keys32[j] = k;
      values32[j] = v;
    }
  }
  attend_rows(q, n_heads, keys32.data(), values32.data(), n_keys, scaling, partial, head_stride,
              stream);
}

// Scores, softmax record (m, l) and unnormalised weighted values of n_heads query heads over n_keys
// key / value rows.
template <class Row>
void Gemma3Model::attend_rows(const float* q, int64_t n_heads, const Row* const* keys,
                              const Row* const* values, int64_t n_keys, float scaling,
                              float* partial, int64_t head_stride, bool stream) const {
  const int64_t hd = config_.head_dim;
  thread_local std::vector<float> scores;
  scores.resize(n_heads * n_keys);
  // A decode step's value rows are asked for while the scores run (the kernel ignores them
  // when not streaming).
  attention_scores(q, n_heads, hd, keys, n_keys, scaling, scores.data(), n_keys, stream, values);
  for (int64_t h = 0; h < n_heads; ++h) {
    float* sc = scores.data() + h * n_keys;
    float* rec = partial + h * head_stride;
    // The vector argmax: std::max_element's scalar chain of maxss was ~3% of a 4096-token prefill
    // (the same value for scores without NaN; a NaN score makes the record NaN either way).
    rec[0] = sc[argmax(sc, n_keys)];
    rec[1] = exp_sub_sum(sc, n_keys, rec[0]);
    std::fill(rec + 2, rec + 2 + hd, 0.0f);
  }
  attention_values(scores.data(), n_keys, n_heads, values, n_keys, hd, partial + 2, head_stride,
                   stream);
}

// out = sum_c e^(m_c - M) o_c / sum_c e^(m_c - M) l_c over one head's chunk records (M = max m_c),
// in chunk order.
void Gemma3Model::merge_chunks(const float* partial, int64_t chunks, float* out) const {
  const int64_t hd = config_.head_dim, rec = hd + 2;
  float m = partial[0];
  for (int64_t c = 1; c < chunks; ++c) m = std::max(m, partial[c * rec]);
  float l = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) {
    const float w = std::exp(partial[c * rec] - m);
    l += w * partial[c * rec + 1];
    axpy(w, partial + c * rec + 2, hd, out);
  }
  const float inv = 1.0f / l;
  for (int64_t d = 0; d < hd; ++d) out[d] *= inv;
}

// x += post_ffw_norm(down(gelu_tanh(gate(h)) * up(h))), h = pre_ffw_norm(x)
void Gemma3Model::mlp_block(int layer, int64_t n) {
  const Gemma3LayerWeights& w = weights_.layers[layer];
  const int64_t h = config_.hidden_size, ff = config_.intermediate_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  s_.gate.resize(n * ff);
  s_.up.resize(n * ff);
  rms_norm_rows(s_.x.data(), w.pre_feedforward_norm, n, h, eps, s_.h.data(), pool_);
  clock_.lap(StepPhase::kNorms);
  const MatmulOutput gate_up[] = {{&w.gate_proj, s_.gate.data()}, {&w.up_proj, s_.up.data()}};
  matmul_fused(s_.h.data(), n, gate_up, &pool_);
  lap_matmul(StepPhase::kGateUp, {&w.gate_proj, &w.up_proj}, n);
  // Elementwise, split by elements in units of 4096: a decode step's few thousand run on the
  // calling thread (a pool dispatch and barrier cost more than the ~1 us of work).
  pool_.parallel_for(n * ff, 4096, [this](int64_t i0, int64_t i1) {
    gelu_tanh_gated(s_.gate.data() + i0, s_.up.data() + i0, i1 - i0, s_.gate.data() + i0);
  });
  clock_.lap(StepPhase::kGelu);
  matmul(s_.gate.data(), n, w.down_proj, s_.h.data(), &pool_);
  lap_matmul(StepPhase::kDown, {&w.down_proj}, n);
  add_normed_rows(s_.x.data(), s_.h.data(), w.post_feedforward_norm, n, h, eps, pool_);
  clock_.lap(StepPhase::kNorms);
}

// Final norm and LM head for the tokens whose logits were asked for.
void Gemma3Model::logits(const Gemma3Inputs& in, const std::vector<int64_t>& pos,
                         Gemma3Outputs& out) {
  const int64_t h = config_.hidden_size;
  out.vocab_size = config_.vocab_size;
  out.logit_row_offsets.assign(1, 0);
  out.positions.clear();
  std::vector<int64_t>& selected = s_.selected;
  selected.clear();
  for (int64_t r = 0; r < in.num_rows(); ++r) {
    const int64_t b = in.input_row_offsets[r], e = in.input_row_offsets[r + 1];
    int64_t first = e;
    switch (in.return_logits) {
      case ReturnLogits::kAll:
        first = b;
        break;
      case ReturnLogits::kLastToken:
        first = std::max(b, e - 1);
        break;
      case ReturnLogits::kVariable:
        first = std::max(b, e - in.return_n_logits);
        break;
    }
    for (int64_t t = first; t < e; ++t) {
      selected.push_back(t);
      out.positions.push_back(pos[t]);
    }
    out.logit_row_offsets.push_back(static_cast<int64_t>(selected.size()));
  }
  const int64_t m = static_cast<int64_t>(selected.size());
  s_.hidden_out.resize(m * h);
  for (int64_t i = 0; i < m; ++i)
    rms_norm(s_.x.data() + selected[i] * h, weights_.final_norm.data(), h,
             static_cast<float>(config_.rms_norm_eps), s_.hidden_out.data() + i * h);
  clock_.lap(StepPhase::kNorms);
  out.logits.resize(m * config_.vocab_size);
  matmul(s_.hidden_out.data(), m, weights_.lm_head, out.logits.data(), &pool_);
  if (config_.final_logit_softcapping)
    softcap(out.logits.data(), static_cast<int64_t>(out.logits.size()),
            static_cast<float>(*config_.final_logit_softcapping));
  lap_matmul(StepPhase::kLmHead, {&weights_.lm_head}, m);
}

}  // namespace gemmax
