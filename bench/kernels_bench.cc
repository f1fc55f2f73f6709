// matmul GEMV (one token) and a 64-token prefill at the Gemma 3 270M shapes for every weight
// format, both kernel paths and 1 or 2 threads. Throughput is reported as bytes_per_second of
// weight bytes read (a GEMV streams every weight byte once, so this is the number to compare
// against memory bandwidth).
//
//   kernels_bench --benchmark_filter='Q4_K'      # one format
//   kernels_bench --benchmark_filter='lm_head'   # the 262144 x 640 Q8_0 output projection
//   kernels_bench --benchmark_filter='attention' # a decode step's attention inner loops
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/attention_kernels.h"
#include "kernels/matmul.h"
#include "kernels/thread_pool.h"
#include "kernels/weight_repack.h"
#include "tensor/half.h"
#include "tensor/huge_page_buffer.h"

namespace gemmax {
namespace {

struct Shape {
  const char* name;
  int64_t in, out;
};

// Random weights with finite f16 scales; generated with a cheap LCG so the 170 MB LM head is quick.
// Q5_0x4 is random Q5_0 blocks repacked as at load.
std::vector<std::byte> make_weights(DType t, int64_t rows, int64_t cols) {
  if (t == DType::kQ5_0x4) {
    const std::vector<std::byte> blocks = make_weights(DType::kQ5_0, rows, cols);
    const TensorView w{"w", DType::kQ5_0, {rows, cols}, blocks.data(), blocks.size()};
    std::vector<std::byte> out(repacked_bytes(w));
    repack_weight(w, out.data(), nullptr);
    return out;
  }
  const DTypeLayout layout = require_layout(t);
  std::vector<std::byte> bytes(static_cast<size_t>(rows * dtype_row_bytes(t, cols)));
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (auto& b : bytes) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    b = static_cast<std::byte>(s >> 56);
  }
  const uint16_t small = f32_to_f16(0.01f), one_bf = f32_to_bf16(0.5f);
  if (t == DType::kF32) {
    for (size_t i = 0; i < bytes.size(); i += 4) std::memcpy(&bytes[i], "\x00\x00\x80\x3f", 4);
  } else if (t == DType::kF16 || t == DType::kBF16) {
    for (size_t i = 0; i < bytes.size(); i += 2)
      std::memcpy(&bytes[i], t == DType::kF16 ? &small : &one_bf, 2);
  } else {
    // Every format keeps an f16 scale at offset 0 or at the end of the block; set both candidates
    // that are scale fields for the K formats too (Q2_K/Q3_K/Q6_K keep theirs at the end).
    const bool scale_at_end = t == DType::kQ2_K || t == DType::kQ3_K || t == DType::kQ6_K;
    for (size_t b = 0; b < bytes.size(); b += layout.block_bytes) {
      const size_t off = scale_at_end ? b + layout.block_bytes - 2 : b;
      std::memcpy(&bytes[off], &small, 2);
    }
  }
  return bytes;
}

// A 270M decode step's attention inner loops, one thread: 4 query heads over 576 cached f32
// positions (K and V rows of 256 floats) in 128-key chunks, for 72 layers' worth of K/V (83 MB, so
// they stream from memory as in a real step, where the weights evict them between layers).
void bm_attention(benchmark::State& state, KernelPath path, bool values) {
  if (!kernel_path_supported(path)) {
    state.SkipWithError("kernel path not supported on this CPU");
    return;
  }
  const KernelPath saved = kernel_path();
  set_kernel_path(path);
  constexpr int64_t kHd = 256, kHeads = 4, kKeys = 576, kLayers = 72, kChunk = 128;
  std::vector<float> kv(static_cast<size_t>(kLayers * kKeys * kHd)), q(kHeads * kHd, 0.01f);
  for (size_t i = 0; i < kv.size(); ++i) kv[i] = static_cast<float>(i % 17) * 0.01f;
  std::vector<float> scores(kHeads * kKeys, 0.001f), out(kHeads * kHd);
  std::vector<const float*> rows(kLayers * kKeys);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = kv.data() + i * kHd;
  for (auto _ : state) {
    for (int64_t l = 0; l < kLayers; ++l) {
      const float* const* layer_rows = rows.data() + l * kKeys;
      for (int64_t c = 0; c < kKeys; c += kChunk) {
        const int64_t n = std::min(kChunk, kKeys - c);
        if (values)
          attention_values(scores.data() + c, kKeys, kHeads, layer_rows + c, n, kHd, out.data(),
                           kHd);
        else
          attention_scores(q.data(), kHeads, kHd, layer_rows + c, n, 0.0625f, scores.data() + c,
                           kKeys);
      }
    }
    benchmark::DoNotOptimize(scores.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kv.size() * sizeof(float)));
  set_kernel_path(saved);
}

// A decode step's attention over F16 K/V as gemmax bench stores them (one thread): `layers` x 576
// cached positions x `kv` kv heads of 256 with `group` query heads each, in 16-row pages (K rows
// then V rows) and 128-key chunks. 4B: 34 layers, 4 kv heads x 2 (80 MB); 270M: 1 kv head x 4, 72
// layers (42 MB); 1 layer: cached. With more than one layer each iteration reads the next of
// enough copies of that cache to fill 1 GiB, so that it comes from memory as in a real step, where
// the weights evict it: one copy could stay in an L3 of hundreds of MB (the Intel host of
// sessions 12-17 reports 480 MiB; until session 17 these cases read one copy).
// `head_major`: a page keeps each kv head's 16 rows together ([head][row][d]) as the KV cache does,
// instead of whole rows ([row][head][d]), where one kv head read 512-byte slices 2 KB apart.
// `loops`: 1 scores only, 2 values only, 3 both (a step): whether the two together cost the sum of
// each alone, i.e. whether memory and compute overlap (compare times: bytes_per_second counts K
// and V either way); 0: no arithmetic, the K and V rows only read in the same order (the memory
// floor of a step from one thread).
__attribute__((target("avx2"))) int64_t read_rows(const uint16_t* const* rows, int64_t n,
                                                  int64_t hd) {
  __m256i acc = _mm256_setzero_si256();
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; d += 16)
      acc =
          _mm256_add_epi16(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[j] + d)));
  return _mm256_extract_epi64(acc, 0);
}

// Attention over paged K/V rows of Elem (uint16_t: F16; float: F32).
template <class Elem = uint16_t>
void bm_attention_rows(benchmark::State& state, int64_t kv, int64_t group, int64_t layers,
                       bool head_major, int loops = 3) {
  constexpr int64_t kHd = 256, kKeys = 576, kChunk = 128, kPage = 16, kPages = kKeys / kPage;
  if (!kernel_path_supported(KernelPath::kAvx2)) {
    state.SkipWithError("AVX2 not supported on this CPU");
    return;
  }
  const int64_t page_elems = 2 * kPage * kv * kHd;
  const auto n_elems = static_cast<size_t>(layers * kPages * page_elems);
  const size_t copies = layers > 1 ? (size_t{1} << 30) / (n_elems * sizeof(Elem)) + 1 : 1;
  const HugePageBuffer mem(copies * n_elems * sizeof(Elem));  // as the KV cache's pool
  const std::span<Elem> all(reinterpret_cast<Elem*>(mem.data()), copies * n_elems);
  for (size_t i = 0; i < all.size(); ++i) {
    const float v = static_cast<float>(i % 17) * 0.01f;
    if constexpr (std::is_same_v<Elem, float>)
      all[i] = v;
    else
      all[i] = f32_to_f16(v);
  }
  size_t copy = 0;
  const Elem* cache = all.data();
  auto row = [&](int64_t layer, int64_t pos, int64_t head, bool value) {
    const Elem* page =
        cache + (layer * kPages + pos / kPage) * page_elems + (value ? kPage * kv * kHd : 0);
    const int64_t r = pos % kPage;
    return page + (head_major ? (head * kPage + r) * kHd : (r * kv + head) * kHd);
  };
  std::vector<const Elem*> keys(kChunk), values(kChunk);
  // From memory the kernels prefetch ahead, as in a decode step; cached (one layer), as in a
  // prefill, they do not (the prefetches cost ~40% of the cached score loop).
  const bool stream = layers > 1;
  std::vector<float> q(group * kHd, 0.01f), scores(group * kChunk), out(group * kHd);
  int64_t sum = 0;
  for (auto _ : state) {
    cache = all.data() + copy * n_elems;
    copy = (copy + 1) % copies;
    for (int64_t l = 0; l < layers; ++l)
      for (int64_t h = 0; h < kv; ++h)
        for (int64_t c = 0; c < kKeys; c += kChunk) {
          const int64_t n = std::min(kChunk, kKeys - c);
          for (int64_t j = 0; j < n; ++j) {
            keys[j] = row(l, c + j, h, false);
            values[j] = row(l, c + j, h, true);
          }
          if constexpr (std::is_same_v<Elem, uint16_t>)
            if (loops == 0)
              sum += read_rows(keys.data(), n, kHd) + read_rows(values.data(), n, kHd);
          if (loops & 1)
            attention_scores(q.data(), group, kHd, keys.data(), n, 0.0625f, scores.data(), kChunk,
                             stream);
          if (loops & 2)
            attention_values(scores.data(), kChunk, group, values.data(), n, kHd, out.data(), kHd,
                             stream);
        }
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(n_elems * sizeof(Elem)));
}

void bm_matmul(benchmark::State& state, DType t, Shape shape, KernelPath path, int threads,
               int64_t n_tokens) {
  if (!kernel_path_supported(path)) {
    state.SkipWithError("kernel path not supported on this CPU");
    return;
  }
  set_kernel_path(path);
  const std::vector<std::byte> bytes = make_weights(t, shape.out, shape.in);
  const TensorView w{shape.name, t, {shape.out, shape.in}, bytes.data(), bytes.size()};
  std::vector<float> x(static_cast<size_t>(shape.in * n_tokens));
  std::vector<float> y(static_cast<size_t>(shape.out * n_tokens));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 17) * 0.1f - 0.8f;
  std::unique_ptr<ThreadPool> pool = threads > 1 ? std::make_unique<ThreadPool>(threads) : nullptr;
  for (auto _ : state) {
    matmul(x.data(), n_tokens, w, y.data(), pool.get());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
  // Multiply-adds per second: the figure of merit once prefill reuses each weight row many times.
  state.counters["MAC/s"] = benchmark::Counter(static_cast<double>(shape.in * shape.out * n_tokens),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  const Shape layer_shapes[] = {{"q_proj_640x1024", 640, 1024},
                                {"ffn_up_640x2048", 640, 2048},
                                {"ffn_down_2048x640", 2048, 640}};
  const DType formats[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0,  DType::kQ4_1,
                           DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K,  DType::kQ3_K,
                           DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ5_0x4};
  for (KernelPath path : {KernelPath::kScalar, KernelPath::kAvx2}) {
    for (int threads : {1, 2}) {
      const std::string suffix =
          std::string("/") + kernel_path_name(path) + "/threads:" + std::to_string(threads);
      for (const Shape& s : layer_shapes) {
        for (DType t : formats) {
          // K formats need rows of whole 256-element super-blocks, so they only fit 2048-wide
          // inputs.
          if (s.in % require_layout(t).block_size != 0) continue;
          benchmark::RegisterBenchmark(
              ("gemv/" + std::string(dtype_name(t)) + "/" + s.name + suffix).c_str(),
              [=](benchmark::State& st) { bm_matmul(st, t, s, path, threads, 1); })
              ->UseRealTime();
        }
      }
      // The 270M's tied output projection, and the same bytes as 2560-wide rows (the 4B's width):
      // the two show what a row costs beyond its bytes.
      const Shape lm_heads[] = {{"lm_head_640x262144", 640, 262144},
                                {"rows_2560x65536", 2560, 65536}};
      for (const Shape& lm_head : lm_heads)
        for (DType t : {DType::kQ4_0, DType::kQ8_0, DType::kBF16}) {
          benchmark::RegisterBenchmark(
              ("gemv/" + std::string(dtype_name(t)) + "/" + lm_head.name + suffix).c_str(),
              [=](benchmark::State& st) { bm_matmul(st, t, lm_head, path, threads, 1); })
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
      if (threads == 1)
        for (bool values : {false, true})
          benchmark::RegisterBenchmark(
              (std::string("attention/") + (values ? "values" : "scores") + "/decode_4x576x256/" +
               kernel_path_name(path))
                  .c_str(),
              [=](benchmark::State& st) { bm_attention(st, path, values); })
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
      if (threads == 1 && path == KernelPath::kAvx2) {
        // K/V rows stored as Elem (uint16_t: F16, the cache's default; float: F32).
        auto add = [&]<class Elem = uint16_t>(const std::string& name, int64_t kv, int64_t group,
                                              int64_t layers, bool head_major, int loops = 3) {
          benchmark::RegisterBenchmark(("attention/" + name).c_str(),
                                       [=](benchmark::State& st) {
                                         bm_attention_rows<Elem>(st, kv, group, layers, head_major,
                                                                 loops);
                                       })
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        };
        add.operator()<float>("f32_270m/cached", 1, 4, 1, true);
        add.operator()<float>("f32_270m/scores_only/cached", 1, 4, 1, true, 1);
        add.operator()<float>("f32_270m/values_only/cached", 1, 4, 1, true, 2);
        add("f16_4b/row_major/memory", 4, 2, 34, false);
        add("f16_4b/head_major/memory", 4, 2, 34, true);
        add("f16_4b/head_major/cached", 4, 2, 1, true);
        add("f16_270m/memory", 1, 4, 72, true);
        add("f16_270m/cached", 1, 4, 1, true);
        add("f16_270m/scores_only/memory", 1, 4, 72, true, 1);
        add("f16_270m/values_only/memory", 1, 4, 72, true, 2);
        add("f16_270m/scores_only/cached", 1, 4, 1, true, 1);
        add("f16_270m/values_only/cached", 1, 4, 1, true, 2);
        add("f16_270m/read_only/memory", 1, 4, 72, true, 0);
        add("f16_4b/read_only/memory", 4, 2, 34, true, 0);
      }
      // Prefill of 64 tokens through the formats the 270M models use (BF16 also with long rows).
      const std::pair<DType, Shape> prefill[] = {
          {DType::kQ5_0, layer_shapes[1]},
          {DType::kQ5_0x4, layer_shapes[1]},
          {DType::kQ4_K, layer_shapes[2]},
          {DType::kQ6_K, layer_shapes[2]},
          {DType::kQ4_0, layer_shapes[1]},
          {DType::kQ8_0, layer_shapes[1]},
          {DType::kBF16, layer_shapes[1]},
          {DType::kBF16, layer_shapes[2]}};  // 2048-wide rows: the two-chain scheme
      for (const auto& [t, s] : prefill) {
        benchmark::RegisterBenchmark(
            ("prefill64/" + std::string(dtype_name(t)) + "/" + s.name + suffix).c_str(),
            [=](benchmark::State& st) { bm_matmul(st, t, s, path, threads, 64); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
      // A whole 512-token prompt through the 1B and 4B models' FFN shapes: long rows, weights and
      // activations larger than the L2 cache, the case the prefill blocking is for (the K
      // formats at the 4B shapes: 1152 is not a multiple of 256).
      if (path == KernelPath::kAvx2) {
        const Shape b1[] = {{"1b_up_1152x6912", 1152, 6912}, {"1b_down_6912x1152", 6912, 1152}};
        const Shape b4[] = {{"4b_up_2560x10240", 2560, 10240}, {"4b_down_10240x2560", 10240, 2560}};
        const Shape m270[] = {{"270m_up_640x2048", 640, 2048}, {"270m_down_2048x640", 2048, 640}};
        const std::pair<DType, const Shape*> cases[] = {
            {DType::kBF16, m270}, {DType::kBF16, b1}, {DType::kBF16, b4}, {DType::kQ8_0, b1},
            {DType::kQ4_0, b1},   {DType::kQ4_K, b4}, {DType::kQ6_K, b4}};
        for (const auto& [t, shapes] : cases)
          for (int i = 0; i < 2; ++i)
            benchmark::RegisterBenchmark(
                ("prefill512/" + std::string(dtype_name(t)) + "/" + shapes[i].name + suffix)
                    .c_str(),
                [=, s = shapes[i]](benchmark::State& st) {
                  bm_matmul(st, t, s, path, threads, 512);
                })
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
      }
    }
  }
}

}  // namespace
}  // namespace gemmax

int main(int argc, char** argv) {
  gemmax::register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
