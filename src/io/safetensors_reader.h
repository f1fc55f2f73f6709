// safetensors reader over memory maps: a single `.safetensors` file, or a sharded checkpoint
// described by `model.safetensors.index.json`. Supports F32, F16 and BF16 tensors. Tensors of other
// dtypes (I64, F64, U8, ...) are validated like the rest but kept out of tensors(); they are listed
// in unsupported_tensors() and tensor() on them throws naming the tensor and its dtype. Header
// length, JSON, dtypes, shapes and data offsets are validated against the file size; a malformed
// file throws SafetensorsError naming the file and tensor.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "tensor/tensor_view.h"

namespace gemmax {

class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class SafetensorsReader {
 public:
  // `path` is a .safetensors file, an index.json, or a directory holding either
  // (model.safetensors.index.json is preferred over model.safetensors).
  explicit SafetensorsReader(const std::string& path);
  // Parses one in-memory .safetensors image (fuzzing, tests). `bytes` must outlive the reader:
  // tensor views point into it. `name` stands in for the path in error messages.
  SafetensorsReader(std::span<const std::byte> bytes, const std::string& name);

  // All tensors of all shards, by name.
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;
  const TensorView& tensor(const std::string& name) const;  // throws naming the tensor
  // `__metadata__` string map of the first shard.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensors whose dtype gemmax cannot compute with: name -> safetensors dtype string (e.g. "I64").
  const std::map<std::string, std::string>& unsupported_tensors() const { return unsupported_; }
  // Every file that was mapped, in load order (one for a single file, each shard for an index).
  std::vector<std::string> files() const;

 private:
  void add_file(const std::string& file);
  void add_image(std::span<const std::byte> bytes, const std::string& name);
  void load_index(const std::string& index_path);

  std::string path_;  // what the caller opened, for messages
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::string> unsupported_;
  std::map<std::string, std::string> origin_;  // tensor name -> file it came from
};

}  // namespace gemmax
