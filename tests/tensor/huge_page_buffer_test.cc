// HugePageBuffer: zero-filled, writable memory at a 2 MiB boundary (so the kernel can back it with
// huge pages), freed once, movable.
#include "tensor/huge_page_buffer.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace gemmax {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

bool all_zero(const std::byte* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != std::byte{0}) return false;
  return true;
}

TEST(HugePageBuffer, IsZeroedWritableAndAlignedToAHugePage) {
  for (size_t n : {size_t{1}, size_t{4096}, kHugePage, 3 * kHugePage + 17}) {
    HugePageBuffer b(n);
    ASSERT_NE(b.data(), nullptr);
    EXPECT_EQ(b.size(), n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % kHugePage, 0u);
    EXPECT_TRUE(all_zero(b.data(), n));
    b.data()[n - 1] = std::byte{0xa5};
    for (size_t i = 0; i + 1 < n; i += 997) b.data()[i] = std::byte{0x5a};
    EXPECT_EQ(b.data()[n - 1], std::byte{0xa5});
    if (n > 1) {
      EXPECT_EQ(b.data()[0], std::byte{0x5a});
    }
  }
}

// Pages of [p, p + n) the kernel reports resident (mincore).
size_t resident_pages(const std::byte* p, size_t n) {
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v((n + page - 1) / page);
  if (::mincore(const_cast<std::byte*>(p), n, v.data()) != 0) return 0;
  size_t count = 0;
  for (unsigned char c : v) count += c & 1;
  return count;
}

TEST(HugePageBuffer, PrefaultBacksEveryPageAndKeepsZeros) {
  const size_t n = 2 * kHugePage + 4096 * 3 + 5;
  HugePageBuffer b(n);
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t pages = (n + page - 1) / page;
  EXPECT_LT(resident_pages(b.data(), n), pages);  // fresh anonymous memory: not yet backed
  b.prefault();
  EXPECT_EQ(resident_pages(b.data(), n), pages);
  EXPECT_TRUE(all_zero(b.data(), n));
  HugePageBuffer empty;
  empty.prefault();  // nothing to touch
}

TEST(HugePageBuffer, PrefaultWhileCheapBacksEverythingWhenFastEnough) {
  const size_t n = 3 * kHugePage + 4096 + 9;
  HugePageBuffer b(n);
  EXPECT_TRUE(b.prefault_while_cheap(0.0));  // every page is fast enough
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  EXPECT_EQ(resident_pages(b.data(), n), (n + page - 1) / page);
  EXPECT_TRUE(all_zero(b.data(), n));
  HugePageBuffer empty;
  EXPECT_TRUE(empty.prefault_while_cheap(1e9));
}

TEST(HugePageBuffer, PrefaultWhileCheapGivesUpAfterTwoSlowPages) {
  // No page faults in at an infinite rate: the first two are backed, then it gives up, and the
  // rest is untouched (still zero and writable).
  const size_t n = 5 * kHugePage + 100;
  HugePageBuffer b(n);
  EXPECT_FALSE(b.prefault_while_cheap(std::numeric_limits<double>::infinity()));
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  EXPECT_EQ(resident_pages(b.data(), 2 * kHugePage), 2 * kHugePage / page);
  EXPECT_EQ(resident_pages(b.data() + 2 * kHugePage, n - 2 * kHugePage), 0u);
  EXPECT_TRUE(all_zero(b.data(), n));
  b.data()[n - 1] = std::byte{3};
  EXPECT_EQ(b.data()[n - 1], std::byte{3});
}

TEST(HugePageBuffer, EmptyHoldsNothing) {
  HugePageBuffer a, b(0);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b.data(), nullptr);
}

TEST(HugePageBuffer, MovesHandOverTheMemory) {
  HugePageBuffer a(kHugePage + 1);
  a.data()[5] = std::byte{7};
  std::byte* p = a.data();
  HugePageBuffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is defined
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), kHugePage + 1);
  HugePageBuffer c(100);
  c = std::move(b);  // c's own memory is unmapped, b's handed over
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c.data()[5], std::byte{7});
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move)
}

TEST(HugePageBuffer, ImpossibleSizesThrowBadAlloc) {
  EXPECT_THROW(HugePageBuffer(SIZE_MAX - 100), std::bad_alloc);
  EXPECT_THROW(HugePageBuffer(size_t{1} << 62), std::bad_alloc);
}

}  // namespace
}  // namespace gemmax
