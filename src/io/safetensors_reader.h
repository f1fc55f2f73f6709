// safetensors reader over memory maps: a single `.safetensors` file, or a sharded checkpoint described by
// `model.safetensors.index.json`. Supports F32, F16 and BF16 tensors (others are listed but rejected when
// asked for). Header length, JSON, dtypes, shapes and data offsets are validated against the file size;
// a malformed file throws SafetensorsError naming the file and tensor.
#pragma once

#include <map>
#include <memory>
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

  // All tensors of all shards, by name.
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;
  const TensorView& tensor(const std::string& name) const;  // throws naming the tensor
  // `__metadata__` string map of the first shard.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  void add_file(const std::string& file);

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace gemmax
