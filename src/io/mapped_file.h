// Read-only memory map of a whole file, unmapped when the object dies. Checkpoint tensors are views
// into it, so weights are never copied when the compute format equals the stored one.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace gemmax {

class MappedFile {
 public:
  // Maps `path`; throws std::runtime_error naming the path when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

  // Drops the whole pages inside [p, p + n) from the process's resident set (MADV_DONTNEED): for
  // bytes that were copied elsewhere (repacked weights) and will not be read here again. Touched
  // later, they are read again from the file. Ranges outside the mapping are ignored; advice
  // only, a failure changes nothing.
  void release_pages(const std::byte* p, size_t n) const;

 private:
  void release() noexcept;

  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace gemmax
