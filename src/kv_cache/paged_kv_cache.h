// Paged KV cache (vLLM/MAX style): one pool of fixed-size pages allocated once; every sequence
// owns, per layer, a table of page ids in position order. A page holds one layer's K and V rows
// for page_size consecutive positions, as one run per kv head and K/V (see KVBlock). Sliding-window
// layers free their oldest pages as soon as no future query can attend them, so a long sequence's
// local layers stay at ~window/page_size pages.
//
// Life of a decode/prefill step for a sequence:  reserve(id, n)  ->  for each layer: store(...) for
// the n new positions, blocks(...) to attend  ->  commit(id, n). Mutating calls must be
// serialised by the caller (the engine runs one step at a time); const calls (blocks, length, ...)
// may run concurrently with each other, e.g. attention threads reading blocks().
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "kv_cache/block_allocator.h"
#include "kv_cache/kv_cache_params.h"
#include "tensor/huge_page_buffer.h"

namespace gemmax {

// The pool cannot satisfy a reserve(); nothing was changed. The scheduler decides what to
// evict/preempt.
class KVCacheFullError : public std::runtime_error {
  using runtime_error::runtime_error;
};

// Contiguous positions [first_pos, first_pos + n) of one layer of one sequence, inside one page.
// The pool is 2 * n_kv_heads planes, K of kv head h in plane h and V in plane n_kv_heads + h; a
// plane holds one run of page_size rows ([position][head_dim]) per page, in page-id order. So the
// attention of one kv head reads one contiguous run per page, and the runs of pages reserved
// together (a prefill's) follow each other: one linear K stream, then one V stream (with K and V
// runs alternating page by page the 270M decode attention took ~12% longer). With whole rows
// ([position][kv head][head_dim]) a 4B decode read a 512-byte slice of every 2 KB row, ~30% slower
// (kernels_bench attention/f16_4b). k_row(i, h) / v_row(i, h): head_dim elements of
// params.dtype, kv head h of position first_pos + i.
struct KVBlock {
  int64_t first_pos;
  int64_t n;
  const std::byte* k;  // kv head 0 of position first_pos
  const std::byte* v;
  int64_t head_stride;  // bytes from one kv head's rows to the next's (one plane)
  int64_t row_stride;   // bytes from one position to the next (one head's row)
  const std::byte* k_row(int64_t i, int64_t head) const {
    return k + head * head_stride + i * row_stride;
  }
  const std::byte* v_row(int64_t i, int64_t head) const {
    return v + head * head_stride + i * row_stride;
  }
};

using SeqId = int64_t;

class PagedKVCache {
 public:
  // Validates params and maps num_pages * page_stride bytes once (2 MiB aligned, huge pages
  // where the kernel gives them; backed only once touched).
  PagedKVCache(KVCacheParams params, int64_t num_pages);
  ~PagedKVCache();
  PagedKVCache(const PagedKVCache&) = delete;
  PagedKVCache& operator=(const PagedKVCache&) = delete;
  PagedKVCache(PagedKVCache&&) noexcept;
  PagedKVCache& operator=(PagedKVCache&&) noexcept;

  // How many pages fit in a budget of `bytes`.
  static int64_t pages_for_bytes(const KVCacheParams& params, int64_t bytes);
  const KVCacheParams& params() const { return params_; }

  // Backs the whole pool now (HugePageBuffer::prefault), as llama.cpp clears its K/V buffer when
  // it creates a context: for caches sized to one request, so its steps do not fault pages in.
  void prefault() { pool_.prefault(); }

  SeqId add_sequence();    // new empty sequence
  void release(SeqId id);  // frees all its pages; unknown id -> std::out_of_range
  bool contains(SeqId id) const;
  int64_t length(SeqId id) const;  // committed positions
  int64_t num_sequences() const { return static_cast<int64_t>(seqs_.size()); }

  // Ensures pages exist for positions [length, length + n_new) in every layer. All-or-nothing:
  // throws KVCacheFullError (saying how many pages were needed/free) and changes nothing if the
  // pool cannot satisfy it. Sliding layers only hold the last `window` positions plus the new ones.
  void reserve(SeqId id, int64_t n_new);
  // Pages reserve(id, n_new) would take from the pool, for schedulers.
  int64_t pages_needed(SeqId id, int64_t n_new) const;
  // End of the reserved range: store() accepts positions in [length, reserved_end).
  int64_t reserved_end(SeqId id) const;

  // Writes K and V (f32, n_kv_heads * head_dim each) of absolute position `pos`
  // (length <= pos < reserved_end) for `layer`, converting to params.dtype.
  void store(SeqId id, int layer, int64_t pos, const float* k, const float* v);

  // Advances length by n once the step wrote positions [length, length + n) of every layer
  // (checked); then sliding layers free pages whose positions are all < length - window.
  void commit(SeqId id, int64_t n);

  // Drops positions >= new_length (<= length), e.g. rejected speculative tokens, and any
  // reservation; pages entirely past new_length go back to the pool. Throws std::invalid_argument
  // (changing nothing) if a sliding layer already evicted positions the shorter sequence would
  // attend again.
  void truncate(SeqId id, int64_t new_length);

  // Clears `out` (keeping its capacity: no allocation in steady state) and appends the blocks
  // covering positions [begin, end) of `layer`, in order. end may reach past length up to the
  // positions stored this step. Throws std::out_of_range for a bad range or if any position was
  // evicted.
  void blocks(SeqId id, int layer, int64_t begin, int64_t end, std::vector<KVBlock>& out) const;

  // First position still held by `layer` (0 for global layers; grows for sliding ones).
  int64_t first_retained_pos(SeqId id, int layer) const;
  int64_t pages_held(SeqId id, int layer) const;

  int64_t free_pages() const { return allocator_.free_blocks(); }
  int64_t total_pages() const { return allocator_.total_blocks(); }
  int64_t used_pages() const { return allocator_.used_blocks(); }
  int64_t kv_bytes(SeqId id) const;  // bytes of pages currently held by the sequence

  // Bytes a sequence holds right after committing `length` tokens (nothing reserved): global layers
  // ceil(length / page) pages, sliding layers the pages touching [length - window, length), which
  // is ceil(min(length, window) / page) or one more when the window boundary falls inside a page.
  static int64_t kv_bytes_for_length(const KVCacheParams& params, int64_t length);
  // The pages behind kv_bytes_for_length (what a scheduler compares with free_pages()).
  static int64_t pages_for_length(const KVCacheParams& params, int64_t length);

 private:
  // Page ids of one layer in position order. Sliding layers pop from the front, so the ids live in
  // a vector with a moving head that is compacted now and then (amortised O(1), capacity reused).
  struct PageTable {
    std::vector<BlockAllocator::BlockId> ids;
    size_t head = 0;         // ids[head] is the page of logical index first_page
    int64_t first_page = 0;  // logical page index (position / page_size) of ids[head]
    int64_t stored_end = 0;  // one past the highest position stored in this layer
    int64_t size() const { return static_cast<int64_t>(ids.size() - head); }
    int64_t end_page() const { return first_page + size(); }
  };
  struct Sequence {
    int64_t length = 0;
    int64_t reserved_end = 0;
    std::vector<PageTable> layers;
  };

  Sequence& seq(SeqId id);
  const Sequence& seq(SeqId id) const;
  void check_layer(int layer) const;
  // First byte of one run of `page`: plane h < n_kv_heads holds kv head h's K rows, plane
  // n_kv_heads + h its V rows.
  std::byte* run_ptr(int64_t plane, BlockAllocator::BlockId page) const;
  int64_t pages_to_cover(const Sequence& s, int64_t end_pos) const;
  void pop_front_page(PageTable& table);
  void pop_back_page(PageTable& table);
  void evict_out_of_window(Sequence& s);

  KVCacheParams params_;
  int64_t head_bytes_ = 0;    // one kv head's row: head_dim elements
  int64_t run_stride_ = 0;    // params_.run_stride()
  int64_t plane_stride_ = 0;  // num_pages runs
  HugePageBuffer pool_;       // streamed by every decode step: on 2 MiB pages
  BlockAllocator allocator_;
  std::unordered_map<SeqId, Sequence> seqs_;
  SeqId next_id_ = 0;
};

}  // namespace gemmax
