// GGUF v2/v3 reader over a memory map: header, every metadata value type, tensor infos, and tensor
// views that point into the map. Every offset, count and size is bounds-checked against the file
// before use; a malformed file throws GgufError naming the file and the field or tensor that is
// wrong.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "io/mapped_file.h"
#include "tensor/tensor_view.h"

namespace gemmax {

class GgufError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One metadata value. Arrays hold their elements already decoded (strings as std::string), except
// arrays longer than the reader's GgufReadOptions::max_array_elements, which are checked and
// skipped (GgufUnloadedArray: their length only).
struct GgufValue;
using GgufArray = std::vector<GgufValue>;
struct GgufUnloadedArray {
  uint64_t count = 0;
  // The elements' bytes, already checked by the reader (they point into the reader's file or
  // image); GgufValue::strings and GgufValue::numbers read them.
  std::span<const std::byte> bytes;
};
struct GgufValue {
  // GGUF value type ids: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array,
  // 10 u64, 11 i64, 12 f64.
  uint32_t type = 0;
  // For arrays (type 9): the GGUF type id of the elements, kept so empty arrays still say what they
  // hold.
  uint32_t array_type = 0;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>,
               GgufUnloadedArray>
      value;

  // Numeric access with conversion; throws GgufError (naming `key`) when the value is not numeric.
  int64_t as_int(const std::string& key) const;
  double as_float(const std::string& key) const;
  bool as_bool(const std::string& key) const;
  const std::string& as_string(const std::string& key) const;
  // Throws GgufError for an array the reader skipped (see GgufReadOptions).
  const GgufArray& as_array(const std::string& key) const;
  // The elements of a string array, decoded or skipped, as views into this value or the reader's
  // bytes (valid while the reader lives): a tokenizer reads its 262144 tokens without a GgufValue
  // per token. Throws GgufError (naming `key`) for anything but an array of strings.
  std::vector<std::string_view> strings(const std::string& key) const;
  // The elements of an array of numbers (any integer or float type), decoded or skipped. Throws
  // GgufError (naming `key`) for anything else.
  std::vector<double> numbers(const std::string& key) const;
};

struct GgufReadOptions {
  // Arrays with more elements are validated but not decoded. Each decoded element costs ~48 bytes
  // (a GgufValue), so a tokenizer's three 262144-entry arrays took ~37 MB for as long as the
  // reader lived; the model's reader, which needs only tensors and config, skips them, and the
  // tokenizer's reader skips them and reads them with GgufValue::strings / numbers.
  uint64_t max_array_elements = UINT64_MAX;
};

class GgufReader {
 public:
  // Opens and parses `path`; throws GgufError on any malformed header, metadata or tensor info.
  explicit GgufReader(const std::string& path, GgufReadOptions options = {});
  // Parses an in-memory GGUF image (fuzzing, tests). `bytes` must outlive the reader: tensor views
  // point into it. `name` stands in for the path in error messages.
  GgufReader(std::span<const std::byte> bytes, const std::string& name,
             GgufReadOptions options = {});

  const std::string& path() const { return path_; }
  // The file mapping the tensors point into; null for in-memory images.
  const MappedFile* mapped_file() const { return file_.get(); }
  uint32_t version() const { return version_; }
  // `general.alignment` (default 32) and the file offset where tensor data starts.
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }

  // Typed lookups; the `get_*` forms throw GgufError naming the missing or mistyped key.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::optional<int64_t> find_int(const std::string& key) const;
  std::optional<double> find_float(const std::string& key) const;
  std::optional<std::string> find_string(const std::string& key) const;
  std::optional<bool> find_bool(const std::string& key) const;

  // Tensors in file order, shapes outermost-first (reversed from GGUF's ne[]).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;
  const TensorView& tensor(const std::string& name) const;  // throws naming the tensor

 private:
  void parse(std::span<const std::byte> bytes, const GgufReadOptions& options);

  std::unique_ptr<MappedFile> file_;  // null for in-memory images
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace gemmax
