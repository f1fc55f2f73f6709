// Gemma3Weights: views of every tensor the forward pass reads, checked against the config, plus the
// small norm vectors already turned into their f32 multipliers (1 + w). Large tensors stay in the
// checkpoint's mapping in their stored format, except Q5_0 matmul weights on the AVX2 path, which
// are repacked once at load (kernels/weight_repack.h) and whose file pages are then dropped.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/gemma3_config.h"
#include "tensor/huge_page_buffer.h"
#include "tensor/tensor_view.h"

namespace gemmax {

class GgufReader;
class SafetensorsReader;

struct Gemma3LayerWeights {
  TensorView q_proj, k_proj, v_proj, o_proj;
  TensorView gate_proj, up_proj, down_proj;
  // RMSNorm multipliers, f32, already (1 + w).
  std::vector<float> input_norm, q_norm, k_norm, post_attention_norm, pre_feedforward_norm,
      post_feedforward_norm;
};

struct Gemma3Weights {
  TensorView embed_tokens;  // [vocab, hidden]
  TensorView lm_head;       // the embedding itself when tied
  std::vector<float> final_norm;
  std::vector<Gemma3LayerWeights> layers;
};

// Whether Gemma3Checkpoint::open regroups Q5_0 matmul weights for the AVX2 kernels (on that kernel
// path only; the products are bit-identical either way).
enum class Repack {
  kNever,      // every weight in the file's layout
  kWhenCheap,  // only when the copy's memory faults in cheaply (Gemma3Checkpoint::repack_weights)
  kAlways,     // the tests of the repacked layout
};

// A loaded checkpoint: the mapped files, the config they describe and the weight views into them.
class Gemma3Checkpoint {
 public:
  // `path`: a HF directory (config.json + safetensors), a .gguf file.
  static std::unique_ptr<Gemma3Checkpoint> open(const std::string& path,
                                                Repack repack = Repack::kWhenCheap);
  ~Gemma3Checkpoint();

  const Gemma3Config& config() const { return config_; }
  Gemma3Config& mutable_config() { return config_; }
  const Gemma3Weights& weights() const { return weights_; }
  const std::string& path() const { return path_; }
  bool is_gguf() const { return gguf_ != nullptr; }
  const GgufReader* gguf() const { return gguf_.get(); }
  // Every tensor of the checkpoint with its stored format, for `gemmax info`.
  std::vector<TensorView> tensor_list() const;
  // How many weights were repacked at load (0 on the scalar kernel path, without Q5_0, or when
  // Repack::kWhenCheap found the memory for the copy slow to fault in).
  size_t repacked_count() const { return repacked_count_; }

 private:
  Gemma3Checkpoint() = default;
  void load_gguf(const std::string& path, Repack repack);
  void load_safetensors(const std::string& dir);
  void repack_weights(Repack repack);

  std::string path_;
  std::unique_ptr<GgufReader> gguf_;
  std::unique_ptr<SafetensorsReader> safetensors_;
  Gemma3Config config_;
  Gemma3Weights weights_;
  HugePageBuffer repacked_;  // what repacked views point into, one arena for all
  size_t repacked_count_ = 0;
};

}  // namespace gemmax
