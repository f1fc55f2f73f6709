#include "model/gemma3_weights.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <new>

#include "io/gguf_reader.h"
#include "io/safetensors_reader.h"
#include "kernels/dequantize.h"
#include "kernels/matmul.h"
#include "kernels/thread_pool.h"
#include "kernels/weight_repack.h"

namespace gemmax {
namespace {

namespace fs = std::filesystem;

// Checks a weight's shape against what the config implies; the error names the tensor and both
// shapes.
const TensorView& expect_shape(const TensorView& t, std::vector<int64_t> shape,
                               const std::string& file) {
  if (t.shape != shape) {
    throw ConfigError(file + ": tensor '" + t.name + "' has shape " + shape_string(t.shape) +
                      ", the config implies " + shape_string(shape));
  }
  dtype_row_bytes(t.dtype, t.cols());  // throws when rows are not whole blocks
  return t;
}

// f32 multiplier of an RMSNorm: (1 + w) for HF weights; GGUF files store 1 + w already.
std::vector<float> norm_gamma(const TensorView& t, int64_t n, bool stored_plus_one,
                              const std::string& file) {
  expect_shape(t, {n}, file);
  std::vector<float> g(n);
  dequantize_row(t.dtype, t.data, g.data(), n);
  if (!stored_plus_one) {
    for (float& v : g) v += 1.0f;
  }
  return g;
}

// Names of the text model's tensors in one checkpoint format.
struct NameScheme {
  std::string embed, final_norm, lm_head;
  std::string layer_prefix;  // followed by the layer index
  std::string q, k, v, o, gate, up, down;
  std::string input_norm, q_norm, k_norm, post_attention_norm, pre_ffw_norm, post_ffw_norm;
  bool norms_plus_one = false;
};

NameScheme gguf_names() {
  return {"token_embd.weight",
          "output_norm.weight",
          "output.weight",
          "blk.",
          ".attn_q.weight",
          ".attn_k.weight",
          ".attn_v.weight",
          ".attn_output.weight",
          ".ffn_gate.weight",
          ".ffn_up.weight",
          ".ffn_down.weight",
          ".attn_norm.weight",
          ".attn_q_norm.weight",
          ".attn_k_norm.weight",
          ".post_attention_norm.weight",
          ".ffn_norm.weight",
          ".post_ffw_norm.weight",
          true};
}

// HF names; multimodal checkpoints put the text model under language_model (two spellings).
NameScheme hf_names(const SafetensorsReader& st, const std::string& file) {
  static const char* kPrefixes[][2] = {{"model.", "lm_head.weight"},
                                       {"language_model.model.", "language_model.lm_head.weight"},
                                       {"model.language_model.", "lm_head.weight"}};
  for (const auto& p : kPrefixes) {
    const std::string base = p[0];
    if (!st.find_tensor(base + "embed_tokens.weight")) continue;
    return {base + "embed_tokens.weight",
            base + "norm.weight",
            p[1],
            base + "layers.",
            ".self_attn.q_proj.weight",
            ".self_attn.k_proj.weight",
            ".self_attn.v_proj.weight",
            ".self_attn.o_proj.weight",
            ".mlp.gate_proj.weight",
            ".mlp.up_proj.weight",
            ".mlp.down_proj.weight",
            ".input_layernorm.weight",
            ".self_attn.q_norm.weight",
            ".self_attn.k_norm.weight",
            ".post_attention_layernorm.weight",
            ".pre_feedforward_layernorm.weight",
            ".post_feedforward_layernorm.weight",
            false};
  }
  throw ConfigError(file +
                    ": no embed_tokens.weight tensor (looked for model., language_model.model. "
                    "and model.language_model. prefixes)");
}

template <typename Reader>
Gemma3Weights bind_weights(const Reader& r, const NameScheme& n, const Gemma3Config& c,
                           const std::string& file) {
  const int64_t h = c.hidden_size, hd = c.head_dim, ff = c.intermediate_size;
  const int64_t q_out = c.num_attention_heads * hd, kv_out = c.num_key_value_heads * hd;
  auto norm = [&](const std::string& name, int64_t len) {
    return norm_gamma(r.tensor(name), len, n.norms_plus_one, file);
  };
  Gemma3Weights w;
  w.embed_tokens = expect_shape(r.tensor(n.embed), {c.vocab_size, h}, file);
  const TensorView* head = r.find_tensor(n.lm_head);
  w.lm_head = (head && !c.tie_word_embeddings) ? expect_shape(*head, {c.vocab_size, h}, file)
                                               : w.embed_tokens;
  w.final_norm = norm(n.final_norm, h);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = n.layer_prefix + std::to_string(i);
    Gemma3LayerWeights l;
    l.q_proj = expect_shape(r.tensor(p + n.q), {q_out, h}, file);
    l.k_proj = expect_shape(r.tensor(p + n.k), {kv_out, h}, file);
    l.v_proj = expect_shape(r.tensor(p + n.v), {kv_out, h}, file);
    l.o_proj = expect_shape(r.tensor(p + n.o), {h, q_out}, file);
    l.gate_proj = expect_shape(r.tensor(p + n.gate), {ff, h}, file);
    l.up_proj = expect_shape(r.tensor(p + n.up), {ff, h}, file);
    l.down_proj = expect_shape(r.tensor(p + n.down), {h, ff}, file);
    l.input_norm = norm(p + n.input_norm, h);
    l.q_norm = norm(p + n.q_norm, hd);
    l.k_norm = norm(p + n.k_norm, hd);
    l.post_attention_norm = norm(p + n.post_attention_norm, h);
    l.pre_feedforward_norm = norm(p + n.pre_ffw_norm, h);
    l.post_feedforward_norm = norm(p + n.post_ffw_norm, h);
    w.layers.push_back(std::move(l));
  }
  return w;
}

std::string gguf_file_type_name(int64_t t) {
  switch (t) {
    case 0:
      return "F32";
    case 1:
      return "F16";
    case 2:
      return "Q4_0";
    case 7:
      return "Q8_0";
    case 14:
      return "Q4_K_S";
    case 15:
      return "Q4_K_M";
    case 16:
      return "Q5_K_S";
    case 17:
      return "Q5_K_M";
    case 18:
      return "Q6_K";
    case 32:
      return "BF16";
    default:
      return "file_type " + std::to_string(t);
  }
}

constexpr size_t kRepackAlign = 64;  // each repacked weight starts on a cache line
// Huge pages fault in at ~5 GB/s when the kernel has them at hand, ~0.1 GB/s when the host must
// back them first (HugePageBuffer::prefault_while_cheap); the cut is far from both.
constexpr double kMinHugePageFaultRate = 0.5e9;         // bytes per second
constexpr int64_t kRepackSlabBytes = int64_t{4} << 20;  // rows repacked before their pages go

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

Gemma3Checkpoint::~Gemma3Checkpoint() = default;

std::unique_ptr<Gemma3Checkpoint> Gemma3Checkpoint::open(const std::string& path, Repack repack) {
  std::unique_ptr<Gemma3Checkpoint> ckpt(new Gemma3Checkpoint());
  ckpt->path_ = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    ckpt->load_safetensors(path);
  } else if (fs::is_regular_file(path, ec)) {
    if (path.size() >= 5 && path.substr(path.size() - 5) == ".json") {
      ckpt->load_safetensors(fs::path(path).parent_path().string());
    } else {
      ckpt->load_gguf(path, repack);
    }
  } else {
    throw std::runtime_error(path + ": no such model file or directory");
  }
  return ckpt;
}

void Gemma3Checkpoint::load_gguf(const std::string& path, Repack repack) {
  // Tensors and config only: the tokenizer's 262144-entry arrays are skipped, not decoded (they
  // took ~37 MB for the model's lifetime; the tokenizer reads the file itself).
  gguf_ = std::make_unique<GgufReader>(path, GgufReadOptions{.max_array_elements = 4096});
  config_ = config_from_gguf(*gguf_);
  if (auto ft = gguf_->find_int("general.file_type"))
    config_.quant_config = "gguf:" + gguf_file_type_name(*ft);
  weights_ = bind_weights(*gguf_, gguf_names(), config_, path);
  if (repack != Repack::kNever) repack_weights(repack);
}

// The matmul weights (the LM head and each layer's seven) the AVX2 kernels read faster repacked
// (Q5_0, kernels/weight_repack.h): copied once into the new layout, the view repointed (a tied
// embedding too: its row lookup dequantizes the repacked layout), and the file pages they came
// from dropped as each slab of rows is done, so the copy takes their place in the resident set
// instead of adding to it (a whole tensor at a time would add the largest one at the peak). Only
// on the AVX2 path, where it pays.
void Gemma3Checkpoint::repack_weights(Repack repack) {
  if (kernel_path() != KernelPath::kAvx2 || gguf_ == nullptr || gguf_->mapped_file() == nullptr)
    return;
  std::vector<TensorView*> views = {&weights_.lm_head};
  for (Gemma3LayerWeights& l : weights_.layers)
    for (TensorView* v :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
      views.push_back(v);
  std::vector<TensorView*> chosen;
  size_t total = 0;
  for (TensorView* v : views)
    if (repacked_dtype(v->dtype, v->cols())) {
      chosen.push_back(v);
      total += round_up(repacked_bytes(*v), kRepackAlign);
    }
  if (chosen.empty()) return;
  // One arena, on 2 MiB pages as the mapped file's weights are: the L2 prefetcher stops at each
  // 4 KiB page, and under a hypervisor each TLB miss walks two page tables. A plain sum loop read
  // 12.6 GB/s on one thread from ordinary pages against 18.2 from huge pages, and whole decodes
  // (Intel VM, 2 threads, interleaved) give the order: 1B Q4_K_M (its Q5_0 projections) 29.3-29.7
  // tok/s repacked on huge pages, 28.0-28.4 as stored (the file's huge pages), 26.8-27.1
  // repacked on ordinary pages (270M Q4_K_M: 92 against 99-102 as stored). So the copy is made
  // only where its memory faults in cheaply (HugePageBuffer::prefault_while_cheap), which on this
  // VM is not always: fresh huge pages sometimes cost ~20 ms each, which would make a 1B load
  // take 2.5 s instead of 0.2. Where THP is off the pages are ordinary, but so are the file's,
  // and the repacked layout's kernel is the faster one (inferred, not measured). One arena, not a
  // buffer per tensor, so only its last page is partly unused.
  try {
    repacked_ = HugePageBuffer(total);
  } catch (const std::bad_alloc&) {
    return;  // the repack only saves time: without room for the copy the stored layout is used
  }
  if (repack == Repack::kWhenCheap && !repacked_.prefault_while_cheap(kMinHugePageFaultRate)) {
    repacked_ = HugePageBuffer();
    return;
  }
  std::byte* const arena = repacked_.data();
  ThreadPool pool;
  const MappedFile& file = *gguf_->mapped_file();
  size_t at = 0;
  for (TensorView* v : chosen) {
    const TensorView stored = *v;
    const int64_t row_bytes = stored.row_bytes();
    const int64_t slab = std::max<int64_t>(1, kRepackSlabBytes / row_bytes);
    for (int64_t r0 = 0; r0 < stored.rows(); r0 += slab) {
      TensorView part = stored;
      part.shape = {std::min(slab, stored.rows() - r0), stored.cols()};
      part.data = stored.data + r0 * row_bytes;
      part.nbytes = static_cast<size_t>(part.shape[0] * row_bytes);
      repack_weight(part, arena + at + r0 * row_bytes, &pool);
      file.release_pages(part.data, part.nbytes);
    }
    file.release_pages(stored.data, stored.nbytes);  // pages that straddled two slabs
    *v = repacked_view(stored, arena + at);
    if (weights_.embed_tokens.data == stored.data) weights_.embed_tokens = *v;
    at += round_up(v->nbytes, kRepackAlign);
  }
  repacked_count_ = chosen.size();
}

void Gemma3Checkpoint::load_safetensors(const std::string& dir) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  config_ = config_from_hf_file(config_path);
  safetensors_ = std::make_unique<SafetensorsReader>(dir);
  const NameScheme names = hf_names(*safetensors_, dir);
  // finalize(): tying and the compute dtype come from the weights themselves.
  const TensorView& embed = safetensors_->tensor(names.embed);
  config_.dtype = embed.dtype;
  config_.embed_scale_dtype = embed.dtype;
  if (!safetensors_->find_tensor(names.lm_head)) config_.tie_word_embeddings = true;
  weights_ = bind_weights(*safetensors_, names, config_, dir);
}

std::vector<TensorView> Gemma3Checkpoint::tensor_list() const {
  if (gguf_) return gguf_->tensors();
  std::vector<TensorView> out;
  for (const auto& [name, t] : safetensors_->tensors()) out.push_back(t);
  return out;
}

}  // namespace gemmax
