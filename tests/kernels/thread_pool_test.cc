// ThreadPool: every index visited exactly once, chunk boundaries on the grain, back-to-back calls,
// degenerate sizes, nested calls and exceptions.
#include "kernels/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace gemmax {
namespace {

// Runs parallel_for and checks coverage: each index hit exactly once, chunks aligned to grain.
// Returns the number of chunks fn was called with.
int expect_exact_cover(ThreadPool& pool, int64_t n, int64_t grain,
                       int chunks_per_thread = ThreadPool::kMaxChunksPerThread) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<bool> misaligned{false};
  std::atomic<int> chunks{0};
  pool.parallel_for(
      n, grain,
      [&](int64_t begin, int64_t end) {
        if (begin % std::max<int64_t>(grain, 1) != 0 || begin >= end || end > n) misaligned = true;
        for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        chunks.fetch_add(1);
      },
      chunks_per_thread);
  EXPECT_FALSE(misaligned) << "n=" << n << " grain=" << grain;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i;
    if (hits[static_cast<size_t>(i)].load() != 1) break;
  }
  return chunks.load();
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

// A decode GEMV asks for one chunk per thread, prefills for up to kMaxChunksPerThread; counts out
// of range are clamped.
TEST(ThreadPool, ChunksPerThreadBoundsTheChunkCount) {
  ThreadPool pool(3);
  for (int per_thread : {1, 2, ThreadPool::kMaxChunksPerThread}) {
    EXPECT_EQ(expect_exact_cover(pool, 1000, 16, per_thread), 3 * per_thread);
    EXPECT_EQ(expect_exact_cover(pool, 32, 16, per_thread), 2);  // only 2 grains
  }
  EXPECT_EQ(expect_exact_cover(pool, 1000, 1, 0), 3);
  EXPECT_EQ(expect_exact_cover(pool, 1000, 1, -7), 3);
  EXPECT_EQ(expect_exact_cover(pool, 1000, 1, 1000), 3 * ThreadPool::kMaxChunksPerThread);
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

// Regression: the chunk count used to live outside the work word, so a worker still holding a
// finished 2-chunk job's word could read the next job's count (8), claim "chunk 2" of the old
// job, run it with the new job's function and count it twice: an index covered twice, then a hang
// (done overshoots) or a return before a chunk finished (a crash in the server). Jobs of 2 and 8
// chunks back to back, 300k times: the old pool failed this within 300k in 3 of 3 standalone
// runs (twice hung, once an index covered twice); the fixed one passed 3M.
TEST(ThreadPool, BackToBackJobsOfDifferentChunkCountsNeverOverlap) {
  // The old pool hung here (a wait that never ends): a watchdog turns that into a failure.
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return finished; })) {
      std::fprintf(stderr,
                   "ThreadPool stress: no progress in 60 s (lost or double-counted chunk)\n");
      std::_Exit(1);
    }
  });
  ThreadPool pool(2);
  std::vector<std::atomic<int>> hits(64);
  for (int iter = 0; iter < 300000 && !HasFatalFailure(); ++iter) {
    for (int64_t n : {2, 64}) {
      for (int64_t i = 0; i < n; ++i) hits[static_cast<size_t>(i)].store(0);
      pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "iteration " << iter << " n " << n;
    }
  }
  {
    std::lock_guard lock(mu);
    finished = true;
  }
  cv.notify_one();
  watchdog.join();
}

TEST(ThreadPool, RejectsNegativeOrHugeThreadCount) {
  EXPECT_THROW(ThreadPool(-1), std::invalid_argument);
  EXPECT_THROW(ThreadPool(5000), std::invalid_argument);  // the chunk count has 16 bits
}

TEST(ThreadPool, ZeroMeansHardwareConcurrency) {
  ThreadPool pool(0);
  EXPECT_GE(pool.size(), 1);
}

}  // namespace
}  // namespace gemmax
