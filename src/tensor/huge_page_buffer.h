// Zero-filled anonymous memory at a 2 MiB boundary with MADV_HUGEPAGE, unmapped when the object
// dies. For the big buffers a decode step streams through (the KV cache pool, the bandwidth
// probe): on 4 KiB pages each 4 KiB of a stream costs a TLB miss and stops the hardware
// prefetcher at the page edge. Pages are only backed once touched, as with any anonymous mapping;
// where the kernel gives no huge pages (THP off) it is an ordinary mapping.
#pragma once

#include <cstddef>

namespace gemmax {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  // Throws std::bad_alloc when the address space cannot be had.
  explicit HugePageBuffer(size_t bytes);
  ~HugePageBuffer();
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;
  HugePageBuffer(HugePageBuffer&& other) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& other) noexcept;

  // Backs every page now (a write per 4 KiB), so that the first use does not pay the faults:
  // with MADV_HUGEPAGE each first touch of a 2 MiB page zeroes it and may compact memory first,
  // which inside a decode step cost up to ~2 ms.
  void prefault();

  // prefault(), a 2 MiB page at a time, as long as the pages fault in at no less than
  // `min_bytes_per_second`: false, with the buffer partly backed, after two slower pages in a row.
  // Why: under a hypervisor with free page reporting (virtio-balloon), a huge page made of memory
  // the guest had handed back to the host costs the host's faults on first touch: ~100 MB/s on
  // the Intel VM of sessions 12-15 (560 MB in 5.5 s, nearly all in clear_page_erms) against
  // ~5 GB/s for recently freed memory. Callers for whom the memory is only an optimisation give
  // it up then.
  bool prefault_while_cheap(double min_bytes_per_second);

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release() noexcept;
  void touch(size_t begin, size_t end);

  std::byte* data_ = nullptr;
  size_t size_ = 0;    // as asked
  size_t mapped_ = 0;  // size rounded up to whole 2 MiB pages
};

}  // namespace gemmax
