// A persistent pool of worker threads created once; parallel_for splits [0, n) into contiguous
// chunks, runs them on the workers and the calling thread, and returns when all are done. No
// allocation and no thread creation per call.
#pragma once

#include <cstdint>
#include <functional>

namespace gemmax {

class ThreadPool {
 public:
  // `n_threads` includes the calling thread; 0 means hardware concurrency.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  // fn(begin, end) over disjoint chunks covering [0, n); chunk boundaries are multiples of `grain`.
  // At most chunks_per_thread (1 to kMaxChunksPerThread) chunks per thread, claimed in turn: more
  // let a fast thread take over a slow one's work, fewer cost fewer claims and chunk starts.
  static constexpr int kMaxChunksPerThread = 4;
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn,
                    int chunks_per_thread = kMaxChunksPerThread);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace gemmax
