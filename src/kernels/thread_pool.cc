// Persistent worker pool. A call publishes one job (function, range, chunking) by storing a new
// generation into the `work` word, which also holds the job's chunk count and the next unclaimed
// chunk. Workers spin briefly on the word (matmuls in a decode step arrive back to back) and then
// sleep on a condition variable. Chunks are claimed by compare-and-swap on the whole word, so a
// late worker holding an old generation can never claim a chunk of a newer job. The caller returns
// once every chunk is *done*; it never waits for a worker that did not wake up in time (on an
// oversubscribed machine it just does the work), and no allocation happens per call.
#include "kernels/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GEMMAX_CPU_RELAX() _mm_pause()
#else
#define GEMMAX_CPU_RELAX() std::this_thread::yield()
#endif

namespace gemmax {
namespace {

// About 50-100 us of spinning at ~100+ cycles per pause: long enough to catch the next matmul of a
// decode step, short enough not to steal a shared core for long when the pool is idle.
constexpr int kSpinIterations = 2000;
// The chunk count has 16 bits of the work word.
constexpr int kMaxThreads = 4096;
static_assert(ThreadPool::kMaxChunksPerThread * kMaxThreads < (1 << 16));

// Set while a thread executes a job chunk, so nested parallel_for calls run inline instead of
// deadlocking on the pool they are running in.
thread_local bool tls_inside_pool = false;

}  // namespace

struct ThreadPool::Impl {
  using Fn = std::function<void(int64_t, int64_t)>;

  int n_threads = 1;
  std::vector<std::thread> workers;

  // The current job. Written (relaxed) by the caller before the release store of `work`; read by a
  // thread only after it claimed a chunk of that generation, and the caller does not rewrite them
  // before all of the job's chunks are done.
  std::atomic<const Fn*> fn{nullptr};
  std::atomic<int64_t> n{0}, grain{1}, n_units{0}, n_chunks{0};
  // generation << 32 | chunk count << 16 | next chunk index. The count must live in the same word
  // as the index: with a separate count, a worker holding the finished job's word could read the
  // next job's larger count (written just before the word) and claim a chunk past the end of the
  // finished job, running it with the next job's fields and counting it twice (seen as a rare hang
  // in wait_all_done and a crash in the server).
  std::atomic<uint64_t> work{0};
  std::atomic<int64_t> done{0};  // chunks finished in the current job
  uint64_t last_generation = 0;  // caller side only, under call_mutex
  std::exception_ptr error;      // first exception thrown by a chunk, guarded by error_mutex
  std::mutex error_mutex;

  std::atomic<int> sleepers{0};
  std::atomic<bool> stop{false};
  std::mutex sleep_mutex;
  std::condition_variable wake;

  std::mutex call_mutex;  // serialises parallel_for calls from different external threads

  static uint64_t generation_of(uint64_t w) { return w >> 32; }
  static int64_t chunks_of(uint64_t w) { return static_cast<int64_t>((w >> 16) & 0xffffu); }
  static int64_t next_chunk_of(uint64_t w) { return static_cast<int64_t>(w & 0xffffu); }
  void run_chunks(uint64_t gen);
  void run_one_chunk(int64_t c);
  void worker_loop();
  uint64_t wait_for_generation(uint64_t seen);
  void wait_all_done();
  void shutdown();
};

// Chunk c covers units [c*U/C, (c+1)*U/C) of `grain` elements each.
void ThreadPool::Impl::run_one_chunk(int64_t c) {
  const int64_t units = n_units.load(std::memory_order_relaxed);
  const int64_t chunks = n_chunks.load(std::memory_order_relaxed);
  const int64_t g = grain.load(std::memory_order_relaxed);
  const int64_t begin = c * units / chunks * g;
  const int64_t end = std::min(n.load(std::memory_order_relaxed), (c + 1) * units / chunks * g);
  tls_inside_pool = true;
  try {
    (*fn.load(std::memory_order_relaxed))(begin, end);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!error) error = std::current_exception();
  }
  tls_inside_pool = false;
  done.fetch_add(1, std::memory_order_release);
}

// Claims and runs chunks of generation `gen` until none are left or a newer job replaced it.
void ThreadPool::Impl::run_chunks(uint64_t gen) {
  uint64_t w = work.load(std::memory_order_acquire);
  for (;;) {
    if (generation_of(w) != gen) return;
    const int64_t c = next_chunk_of(w);
    if (c >= chunks_of(w)) return;  // this job's count, from the same word as the index
    if (work.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
      run_one_chunk(c);
      w = work.load(std::memory_order_acquire);
    }
  }
}

// Returns the newest generation, or `seen` when the pool is stopping.
uint64_t ThreadPool::Impl::wait_for_generation(uint64_t seen) {
  for (int i = 0; i < kSpinIterations; ++i) {
    const uint64_t g = generation_of(work.load(std::memory_order_acquire));
    if (g != seen || stop.load(std::memory_order_relaxed)) return g;
    GEMMAX_CPU_RELAX();
  }
  std::unique_lock<std::mutex> lock(sleep_mutex);
  // seq_cst pairs with the caller's seq_cst publish-then-check-sleepers: one of the two sees the
  // other.
  sleepers.fetch_add(1);
  wake.wait(lock, [&] { return generation_of(work.load()) != seen || stop.load(); });
  sleepers.fetch_sub(1);
  return generation_of(work.load(std::memory_order_acquire));
}

// Spins first (chunks usually finish together), then yields so that a worker still holding a chunk
// gets the core on a busy machine.
void ThreadPool::Impl::wait_all_done() {
  const int64_t chunks = n_chunks.load(std::memory_order_relaxed);
  for (int i = 0; done.load(std::memory_order_acquire) != chunks; ++i) {
    if (i < kSpinIterations) {
      GEMMAX_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::Impl::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    const uint64_t g = wait_for_generation(seen);
    if (stop.load()) return;
    seen = g;
    run_chunks(g);
  }
}

ThreadPool::ThreadPool(int n_threads) : impl_(new Impl) {
  if (n_threads < 0 || n_threads > kMaxThreads) {
    delete impl_;
    throw std::invalid_argument("ThreadPool: thread count must be in 0.." +
                                std::to_string(kMaxThreads) + ", got " + std::to_string(n_threads));
  }
  if (n_threads == 0)
    n_threads = static_cast<int>(
        std::clamp(std::thread::hardware_concurrency(), 1u, static_cast<unsigned>(kMaxThreads)));
  impl_->n_threads = n_threads;
  try {
    impl_->workers.reserve(n_threads - 1);
    for (int i = 1; i < n_threads; ++i)
      impl_->workers.emplace_back([this] { impl_->worker_loop(); });
  } catch (...) {  // thread creation failed: stop the ones already running
    impl_->shutdown();
    delete impl_;
    throw;
  }
}

void ThreadPool::Impl::shutdown() {
  {
    std::lock_guard<std::mutex> lock(sleep_mutex);
    stop.store(true);
  }
  wake.notify_all();
  for (std::thread& t : workers) t.join();
}

ThreadPool::~ThreadPool() {
  impl_->shutdown();
  delete impl_;
}

int ThreadPool::size() const { return impl_->n_threads; }

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn,
                              int chunks_per_thread) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t n_units = (n + grain - 1) / grain;
  Impl& s = *impl_;
  if (s.workers.empty() || n_units == 1 || tls_inside_pool) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(s.call_mutex);
  s.fn.store(&fn, std::memory_order_relaxed);
  s.n.store(n, std::memory_order_relaxed);
  s.grain.store(grain, std::memory_order_relaxed);
  s.n_units.store(n_units, std::memory_order_relaxed);
  const int64_t per_thread = std::clamp(chunks_per_thread, 1, kMaxChunksPerThread);
  const int64_t chunks = std::min(n_units, per_thread * s.n_threads);
  s.n_chunks.store(chunks, std::memory_order_relaxed);
  s.done.store(0, std::memory_order_relaxed);
  s.error = nullptr;
  const uint64_t gen = ++s.last_generation;
  // seq_cst: publishes the job fields above.
  s.work.store(gen << 32 | static_cast<uint64_t>(chunks) << 16);
  if (s.sleepers.load() > 0) {
    { std::lock_guard<std::mutex> lock(s.sleep_mutex); }  // a worker between check and wait sees it
    s.wake.notify_all();
  }
  s.run_chunks(gen);
  s.wait_all_done();
  if (s.error) std::rethrow_exception(s.error);
}

}  // namespace gemmax
