// The machine's peak multiply-add rates, the yardstick for prefill ("what fraction of the peak do
// the GEMMs reach"): independent chains of the instruction sequences the AVX2 kernels are built
// from, with no memory traffic.
//   * int8: maddubs (u8 x s8 -> 32 products summed in pairs) + madd (widen to int32) + add, the
//     minimum sequence for an int8 dot product on AVX2 (no VNNI here): 32 MACs per step.
//   * f32: FMA on 8 lanes: 8 MACs per step (what the F16/BF16 weights use after conversion).
// Run with --benchmark_filter=peak; threads:2 is the per-machine figure on a 2-core box.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include "kernels/matmul.h"

namespace {

constexpr int kChains = 8;  // enough independent chains to cover the instruction latencies
constexpr int64_t kSteps = 1 << 16;

__attribute__((target("avx2,fma"))) int64_t int8_chains(int seed) {
  __m256i acc[kChains];
  const __m256i u = _mm256_set1_epi8(static_cast<char>(3 + seed)), ones = _mm256_set1_epi16(1);
  __m256i s = _mm256_set1_epi8(static_cast<char>(-5 + seed));
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_epi32(c);
  for (int64_t i = 0; i < kSteps; ++i) {
    for (int c = 0; c < kChains; ++c)
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
    s = _mm256_xor_si256(s, acc[0]);  // keeps the compiler from hoisting the products
  }
  __m256i sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_epi32(sum, acc[c]);
  return _mm256_extract_epi32(sum, 0);
}

__attribute__((target("avx2,fma"))) float f32_chains(int seed) {
  __m256 acc[kChains];
  const __m256 a = _mm256_set1_ps(1.0f + 1e-7f * static_cast<float>(seed)),
               b = _mm256_set1_ps(0.999999f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < kSteps; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], b, a);
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  return _mm256_cvtss_f32(sum);
}

// MAC/s of the whole machine (Google Benchmark divides by the real time per iteration over all
// threads; averaging the counter over threads stops it being counted once per thread).
void report(benchmark::State& state, int macs_per_step) {
  state.counters["MAC/s"] = benchmark::Counter(
      static_cast<double>(kSteps * kChains * macs_per_step),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kAvgThreads);
}

// One benchmark per chain kernel: `Chains` runs kSteps steps of `macs_per_step` each.
template <auto Chains, int kMacsPerStep>
void bm_peak(benchmark::State& state) {
  if (!gemmax::kernel_path_supported(gemmax::KernelPath::kAvx2)) {
    state.SkipWithError("no AVX2");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(Chains(state.thread_index()));
  report(state, kMacsPerStep);
}

BENCHMARK(bm_peak<int8_chains, 32>)
    ->Name("peak/int8_maddubs")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(bm_peak<f32_chains, 8>)->Name("peak/f32_fma")->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
