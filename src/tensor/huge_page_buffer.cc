#include "tensor/huge_page_buffer.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <new>
#include <utility>

namespace gemmax {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

HugePageBuffer::HugePageBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  if (bytes > SIZE_MAX - 2 * kHugePage) throw std::bad_alloc();
  mapped_ = (bytes + kHugePage - 1) & ~(kHugePage - 1);
  // Reserve one huge page more than needed, keep the part that starts at a 2 MiB boundary.
  const size_t span = mapped_ + kHugePage;
  void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const auto base = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (base + kHugePage - 1) & ~(kHugePage - 1);
  if (aligned > base) ::munmap(p, aligned - base);
  if (base + span > aligned + mapped_)
    ::munmap(reinterpret_cast<void*>(aligned + mapped_), base + span - (aligned + mapped_));
  data_ = reinterpret_cast<std::byte*>(aligned);
  ::madvise(data_, mapped_, MADV_HUGEPAGE);  // advice only
}

HugePageBuffer::~HugePageBuffer() { release(); }

// A store per 4 KiB of [begin, end): the first of a huge page faults in the whole page where the
// kernel grants one, the others back the range page by page where it does not.
void HugePageBuffer::touch(size_t begin, size_t end) {
  constexpr size_t kPage = 4096;
  // volatile: a store of the zero the page already holds must still happen.
  volatile auto* p = reinterpret_cast<volatile unsigned char*>(data_);
  for (size_t off = begin; off < end; off += kPage) p[off] = 0;
}

void HugePageBuffer::prefault() { touch(0, size_); }

bool HugePageBuffer::prefault_while_cheap(double min_bytes_per_second) {
  using Clock = std::chrono::steady_clock;
  constexpr int kSlowPagesToStop = 2;  // one slow page may be a preemption, two are a pattern
  const std::chrono::duration<double> max_per_page(
      min_bytes_per_second > 0.0 ? static_cast<double>(kHugePage) / min_bytes_per_second
                                 : std::numeric_limits<double>::infinity());
  int slow_in_a_row = 0;
  for (size_t done = 0; done < size_; done += kHugePage) {
    const Clock::time_point start = Clock::now();
    touch(done, std::min(done + kHugePage, size_));
    slow_in_a_row = Clock::now() - start > max_per_page ? slow_in_a_row + 1 : 0;
    if (slow_in_a_row == kSlowPagesToStop) return false;
  }
  return true;
}

HugePageBuffer::HugePageBuffer(HugePageBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

void HugePageBuffer::release() noexcept {
  if (data_ != nullptr) ::munmap(data_, mapped_);
  data_ = nullptr;
  size_ = mapped_ = 0;
}

}  // namespace gemmax
