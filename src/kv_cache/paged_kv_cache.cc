#include "kv_cache/paged_kv_cache.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "kernels/elementwise.h"

namespace gemmax {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string seq_name(SeqId id) { return "sequence " + std::to_string(id); }

// Pages of a sliding layer that are never attended again once `length` positions are committed:
// those whose positions are all < length - window.
int64_t first_live_page(int64_t length, int64_t window, int64_t page_size) {
  return length > window ? (length - window) / page_size : 0;
}

void convert_row(DType dtype, const float* src, int64_t n, std::byte* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:  // vectorised: per element this was ~4% of an F16-KV prefill
      f32_to_f16_row(src, n, reinterpret_cast<uint16_t*>(dst));
      return;
    default:  // kBF16: validate() admits nothing else
      f32_to_bf16_row(src, n, reinterpret_cast<uint16_t*>(dst));
      return;
  }
}

}  // namespace

PagedKVCache::PagedKVCache(KVCacheParams params, int64_t num_pages)
    : params_(std::move(params)), allocator_(0) {
  params_.validate();
  head_bytes_ = params_.head_dim * params_.element_bytes();
  const int64_t page_stride = params_.page_stride();
  if (num_pages < 0 || num_pages > std::numeric_limits<BlockAllocator::BlockId>::max() ||
      num_pages > std::numeric_limits<int64_t>::max() / page_stride) {
    throw std::invalid_argument("PagedKVCache: num_pages " + std::to_string(num_pages) +
                                " out of range for pages of " + std::to_string(page_stride) +
                                " bytes");
  }
  run_stride_ = params_.run_stride();
  plane_stride_ = num_pages * run_stride_;
  const auto bytes = static_cast<size_t>(num_pages * page_stride);
  pool_ = HugePageBuffer(bytes);
  allocator_ = BlockAllocator(num_pages);
}

PagedKVCache::~PagedKVCache() = default;
PagedKVCache::PagedKVCache(PagedKVCache&&) noexcept = default;
PagedKVCache& PagedKVCache::operator=(PagedKVCache&&) noexcept = default;

int64_t PagedKVCache::pages_for_bytes(const KVCacheParams& params, int64_t bytes) {
  params.validate();
  if (bytes < 0) {
    throw std::invalid_argument("PagedKVCache::pages_for_bytes: negative budget " +
                                std::to_string(bytes));
  }
  return std::min<int64_t>(bytes / params.page_stride(),
                           std::numeric_limits<BlockAllocator::BlockId>::max());
}

SeqId PagedKVCache::add_sequence() {
  const SeqId id = next_id_++;
  Sequence& s = seqs_[id];
  s.layers.resize(static_cast<size_t>(params_.num_layers));
  return id;
}

void PagedKVCache::release(SeqId id) {
  Sequence& s = seq(id);
  for (PageTable& t : s.layers) {
    for (size_t i = t.head; i < t.ids.size(); ++i) allocator_.free(t.ids[i]);
  }
  seqs_.erase(id);
}

bool PagedKVCache::contains(SeqId id) const { return seqs_.count(id) != 0; }

int64_t PagedKVCache::length(SeqId id) const { return seq(id).length; }

int64_t PagedKVCache::reserved_end(SeqId id) const { return seq(id).reserved_end; }

PagedKVCache::Sequence& PagedKVCache::seq(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) throw std::out_of_range("PagedKVCache: unknown " + seq_name(id));
  return it->second;
}

const PagedKVCache::Sequence& PagedKVCache::seq(SeqId id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) throw std::out_of_range("PagedKVCache: unknown " + seq_name(id));
  return it->second;
}

void PagedKVCache::check_layer(int layer) const {
  if (layer < 0 || layer >= params_.num_layers) {
    throw std::out_of_range("PagedKVCache: layer " + std::to_string(layer) + " out of range [0, " +
                            std::to_string(params_.num_layers) + ")");
  }
}

std::byte* PagedKVCache::run_ptr(int64_t plane, BlockAllocator::BlockId page) const {
  return pool_.data() + plane * plane_stride_ + static_cast<int64_t>(page) * run_stride_;
}

int64_t PagedKVCache::pages_to_cover(const Sequence& s, int64_t end_pos) const {
  const int64_t want = ceil_div(end_pos, params_.page_size);
  int64_t total = 0;
  for (const PageTable& t : s.layers) total += std::max<int64_t>(0, want - t.end_page());
  return total;
}

int64_t PagedKVCache::pages_needed(SeqId id, int64_t n_new) const {
  const Sequence& s = seq(id);
  if (n_new < 0) {
    throw std::invalid_argument("PagedKVCache: negative n_new " + std::to_string(n_new) + " for " +
                                seq_name(id));
  }
  return pages_to_cover(s, s.length + n_new);
}

void PagedKVCache::reserve(SeqId id, int64_t n_new) {
  const int64_t needed = pages_needed(id, n_new);
  if (needed > free_pages()) {
    throw KVCacheFullError("KV cache full: " + seq_name(id) + " needs " + std::to_string(needed) +
                           " pages for " + std::to_string(n_new) + " new positions but only " +
                           std::to_string(free_pages()) + " of " + std::to_string(total_pages()) +
                           " are free");
  }
  Sequence& s = seq(id);
  const int64_t end_pos = s.length + n_new;
  const int64_t want = ceil_div(end_pos, params_.page_size);
  for (PageTable& t : s.layers) {
    while (t.end_page() < want)
      t.ids.push_back(allocator_.allocate());  // cannot fail: checked above
  }
  s.reserved_end = std::max(s.reserved_end, end_pos);
}

void PagedKVCache::store(SeqId id, int layer, int64_t pos, const float* k, const float* v) {
  Sequence& s = seq(id);
  check_layer(layer);
  if (pos < s.length || pos >= s.reserved_end) {
    throw std::out_of_range("PagedKVCache::store: position " + std::to_string(pos) + " of " +
                            seq_name(id) + " outside the reserved range [" +
                            std::to_string(s.length) + ", " + std::to_string(s.reserved_end) + ")");
  }
  if (k == nullptr || v == nullptr) {
    throw std::invalid_argument("PagedKVCache::store: null K or V row for " + seq_name(id));
  }
  PageTable& t = s.layers[static_cast<size_t>(layer)];
  const int64_t page_index = pos / params_.page_size;
  const int64_t slot = pos % params_.page_size;
  const BlockAllocator::BlockId page =
      t.ids[t.head + static_cast<size_t>(page_index - t.first_page)];
  const int64_t hd = params_.head_dim, nkv = params_.n_kv_heads;
  for (int64_t h = 0; h < nkv; ++h) {
    convert_row(params_.dtype, k + h * hd, hd, run_ptr(h, page) + slot * head_bytes_);
    convert_row(params_.dtype, v + h * hd, hd, run_ptr(nkv + h, page) + slot * head_bytes_);
  }
  t.stored_end = std::max(t.stored_end, pos + 1);
}

void PagedKVCache::commit(SeqId id, int64_t n) {
  Sequence& s = seq(id);
  if (n < 0 || s.length + n > s.reserved_end) {
    throw std::invalid_argument("PagedKVCache::commit: cannot commit " + std::to_string(n) +
                                " positions of " + seq_name(id) + " (length " +
                                std::to_string(s.length) + ", reserved up to " +
                                std::to_string(s.reserved_end) + ")");
  }
  const int64_t new_length = s.length + n;
  for (int layer = 0; layer < params_.num_layers; ++layer) {
    if (s.layers[static_cast<size_t>(layer)].stored_end < new_length) {
      throw std::invalid_argument("PagedKVCache::commit: layer " + std::to_string(layer) + " of " +
                                  seq_name(id) + " was not stored up to position " +
                                  std::to_string(new_length - 1));
    }
  }
  s.length = new_length;
  evict_out_of_window(s);
}

void PagedKVCache::evict_out_of_window(Sequence& s) {
  const int64_t live = first_live_page(s.length, params_.sliding_window, params_.page_size);
  for (int layer = 0; layer < params_.num_layers; ++layer) {
    if (!params_.is_sliding(layer)) continue;
    PageTable& t = s.layers[static_cast<size_t>(layer)];
    while (t.first_page < live && t.size() > 0) pop_front_page(t);
  }
}

void PagedKVCache::pop_front_page(PageTable& t) {
  allocator_.free(t.ids[t.head]);
  ++t.head;
  ++t.first_page;
  // Compact once the dead prefix outweighs the live part: amortised O(1), and erase keeps capacity.
  if (t.head > 16 && t.head * 2 > t.ids.size()) {
    t.ids.erase(t.ids.begin(), t.ids.begin() + static_cast<std::ptrdiff_t>(t.head));
    t.head = 0;
  }
}

void PagedKVCache::pop_back_page(PageTable& t) {
  allocator_.free(t.ids.back());
  t.ids.pop_back();
}

void PagedKVCache::truncate(SeqId id, int64_t new_length) {
  Sequence& s = seq(id);
  if (new_length < 0 || new_length > s.length) {
    throw std::out_of_range("PagedKVCache::truncate: new length " + std::to_string(new_length) +
                            " outside [0, " + std::to_string(s.length) + "] for " + seq_name(id));
  }
  // The shorter sequence's next query must still find its whole window: check before changing
  // anything.
  const int64_t live = first_live_page(new_length, params_.sliding_window, params_.page_size);
  for (int layer = 0; layer < params_.num_layers; ++layer) {
    const PageTable& t = s.layers[static_cast<size_t>(layer)];
    if (params_.is_sliding(layer) && t.first_page > live) {
      throw std::invalid_argument("PagedKVCache::truncate: sliding layer " + std::to_string(layer) +
                                  " of " + seq_name(id) + " already evicted positions before " +
                                  std::to_string(t.first_page * params_.page_size) +
                                  " needed at length " + std::to_string(new_length));
    }
  }
  const int64_t keep_pages = ceil_div(new_length, params_.page_size);
  for (PageTable& t : s.layers) {
    while (t.size() > 0 && t.end_page() > keep_pages) pop_back_page(t);
    t.stored_end = std::min(t.stored_end, new_length);
  }
  s.length = new_length;
  s.reserved_end = new_length;
}

void PagedKVCache::blocks(SeqId id, int layer, int64_t begin, int64_t end,
                          std::vector<KVBlock>& out) const {
  out.clear();
  const Sequence& s = seq(id);
  check_layer(layer);
  const PageTable& t = s.layers[static_cast<size_t>(layer)];
  const int64_t readable_end = std::max(s.length, t.stored_end);
  if (begin < 0 || begin > end || end > readable_end) {
    throw std::out_of_range("PagedKVCache::blocks: range [" + std::to_string(begin) + ", " +
                            std::to_string(end) + ") of layer " + std::to_string(layer) + " of " +
                            seq_name(id) + " outside [0, " + std::to_string(readable_end) + ")");
  }
  const int64_t ps = params_.page_size;
  if (begin < end && begin < t.first_page * ps) {
    throw std::out_of_range("PagedKVCache::blocks: positions before " +
                            std::to_string(t.first_page * ps) + " of sliding layer " +
                            std::to_string(layer) + " of " + seq_name(id) +
                            " were evicted; asked from " + std::to_string(begin));
  }
  // Only the first block may start mid-page; the rest start at slot 0 of consecutive table entries.
  size_t entry = t.head + static_cast<size_t>(begin / ps - t.first_page);
  int64_t slot = begin % ps;
  for (int64_t pos = begin; pos < end; ++entry, slot = 0) {
    const int64_t n = std::min(end - pos, ps - slot);
    const BlockAllocator::BlockId page = t.ids[entry];
    out.push_back(KVBlock{pos, n, run_ptr(0, page) + slot * head_bytes_,
                          run_ptr(params_.n_kv_heads, page) + slot * head_bytes_, plane_stride_,
                          head_bytes_});
    pos += n;
  }
}

int64_t PagedKVCache::first_retained_pos(SeqId id, int layer) const {
  check_layer(layer);
  return seq(id).layers[static_cast<size_t>(layer)].first_page * params_.page_size;
}

int64_t PagedKVCache::pages_held(SeqId id, int layer) const {
  check_layer(layer);
  return seq(id).layers[static_cast<size_t>(layer)].size();
}

int64_t PagedKVCache::kv_bytes(SeqId id) const {
  int64_t pages = 0;
  for (const PageTable& t : seq(id).layers) pages += t.size();
  return pages * params_.page_bytes();
}

int64_t PagedKVCache::kv_bytes_for_length(const KVCacheParams& params, int64_t length) {
  return pages_for_length(params, length) * params.page_bytes();
}

int64_t PagedKVCache::pages_for_length(const KVCacheParams& params, int64_t length) {
  params.validate();
  if (length < 0) {
    throw std::invalid_argument("PagedKVCache::pages_for_length: negative length " +
                                std::to_string(length));
  }
  const int64_t all = ceil_div(length, params.page_size);
  const int64_t sliding = all - first_live_page(length, params.sliding_window, params.page_size);
  int64_t pages = 0;
  for (int layer = 0; layer < params.num_layers; ++layer) {
    pages += params.is_sliding(layer) ? sliding : all;
  }
  return pages;
}

}  // namespace gemmax
