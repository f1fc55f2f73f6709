// ThreadPool: every index visited exactly once, chunk boundaries on the grain, back-to-back calls,
// degenerate sizes, nested calls and exceptions.
#include "kernels/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace gemmax {
namespace {

// Runs parallel_for and checks coverage: each index hit exactly once, chunks aligned to grain.
void expect_exact_cover(ThreadPool& pool, int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<bool> misaligned{false};
  pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    if (begin % std::max<int64_t>(grain, 1) != 0 || begin >= end || end > n) misaligned = true;
    for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  EXPECT_FALSE(misaligned) << "n=" << n << " grain=" << grain;
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i;
}

TEST(ThreadPool, CoversEveryIndexOnceForManyShapes) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {1, 2, 3, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 4, 16, 5000}) expect_exact_cover(pool, n, grain);
    }
  }
}

TEST(ThreadPool, ZeroAndNegativeSizesDoNothing) {
  ThreadPool pool(4);
  int calls = 0;
  pool.parallel_for(0, 1, [&](int64_t, int64_t) { ++calls; });
  pool.parallel_for(-5, 1, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, FewerItemsThanThreads) {
  ThreadPool pool(8);
  expect_exact_cover(pool, 3, 1);
}

TEST(ThreadPool, ZeroGrainIsTreatedAsOne) {
  ThreadPool pool(3);
  expect_exact_cover(pool, 10, 0);
}

TEST(ThreadPool, ManyCallsInARowSumCorrectly) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int call = 0; call < 20000; ++call) {
    pool.parallel_for(17, 1, [&](int64_t b, int64_t e) {
      int64_t s = 0;
      for (int64_t i = b; i < e; ++i) s += i;
      total.fetch_add(s);
    });
  }
  EXPECT_EQ(total.load(), 20000 * (16 * 17 / 2));
}

TEST(ThreadPool, UsesMoreThanOneThreadForLargeWork) {
  ThreadPool pool(2);
  std::mutex m;
  std::set<std::thread::id> ids;
  // Each chunk sleeps a little so the worker surely wakes up and takes some.
  pool.parallel_for(8, 1, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 2u);
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(3);
  std::atomic<int64_t> count{0};
  pool.parallel_for(6, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      pool.parallel_for(10, 1, [&](int64_t b2, int64_t e2) { count.fetch_add(e2 - b2); });
    }
  });
  EXPECT_EQ(count.load(), 60);
}

TEST(ThreadPool, ExceptionsPropagateToTheCallerAndThePoolStaysUsable) {
  ThreadPool pool(4);
  EXPECT_THROW(pool.parallel_for(100, 1,
                                 [](int64_t b, int64_t) {
                                   if (b >= 50) throw std::runtime_error("chunk failed");
                                 }),
               std::runtime_error);
  expect_exact_cover(pool, 100, 3);
}

TEST(ThreadPool, ConcurrentCallersAreSerialisedSafely) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  auto caller = [&] {
    for (int i = 0; i < 500; ++i) {
      pool.parallel_for(33, 2, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    }
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 2 * 500 * 33);
}

TEST(ThreadPool, RejectsNegativeThreadCount) {
  EXPECT_THROW(ThreadPool(-1), std::invalid_argument);
}

TEST(ThreadPool, ZeroMeansHardwareConcurrency) {
  ThreadPool pool(0);
  EXPECT_GE(pool.size(), 1);
}

}  // namespace
}  // namespace gemmax
