// The machine's peak multiply-add rates, the yardstick for prefill ("what fraction of the peak do
// the GEMMs reach"): independent chains of the instruction sequences the AVX2 kernels are built
// from, with no memory traffic.
//   * int8: maddubs (u8 x s8 -> 32 products summed in pairs) + madd (widen to int32) + add, the
//     minimum sequence for an int8 dot product on AVX2 (no VNNI here): 32 MACs per step.
//   * f32: FMA on 8 lanes: 8 MACs per step (what the F16/BF16 weights use after conversion).
//   * on AVX-512 CPUs (skipped elsewhere): f32 FMA on 16 lanes (the BF16 panel prefill's
//     microkernel), and the dot-product instructions gemmax does not use yet but llama.cpp does:
//     vdpbf16ps (AVX512_BF16: 32 bf16 MACs into f32 per instruction) and vpdpbusd (AVX512_VNNI: 64
//     u8 x s8 MACs into int32), the machine's true bf16 / int8 peaks.
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

__attribute__((target("avx512f"))) float f32_chains_512(int seed) {
  __m512 acc[kChains];
  const __m512 a = _mm512_set1_ps(1.0f + 1e-7f * static_cast<float>(seed)),
               b = _mm512_set1_ps(0.999999f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < kSteps; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], b, a);
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  alignas(64) float out[16];
  _mm512_store_ps(out, sum);
  return out[0];
}

__attribute__((target("avx512f,avx512bf16"))) float bf16_chains_512(int seed) {
  __m512 acc[kChains];
  const __m512bh a = (__m512bh)_mm512_set1_epi16(static_cast<short>(0x3f80 + seed)),
                 b = (__m512bh)_mm512_set1_epi16(0x3f7f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < kSteps; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  alignas(64) float out[16];
  _mm512_store_ps(out, sum);
  return out[0];
}

__attribute__((target("avx512f,avx512vnni"))) int64_t int8_chains_512(int seed) {
  __m512i acc[kChains];
  const __m512i u = _mm512_set1_epi8(static_cast<char>(3 + seed));
  __m512i s = _mm512_set1_epi8(static_cast<char>(-5 + seed));
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_epi32(c);
  for (int64_t i = 0; i < kSteps; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], u, s);
    s = _mm512_xor_si512(s, acc[0]);
  }
  __m512i sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_epi32(sum, acc[c]);
  alignas(64) int32_t out[16];
  _mm512_store_si512(out, sum);
  return out[0];
}

bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool has_avx512_bf16() { return has_avx512() && __builtin_cpu_supports("avx512bf16"); }
bool has_avx512_vnni() { return has_avx512() && __builtin_cpu_supports("avx512vnni"); }

// MAC/s of the whole machine (Google Benchmark divides by the real time per iteration over all
// threads; averaging the counter over threads stops it being counted once per thread).
void report(benchmark::State& state, int macs_per_step) {
  state.counters["MAC/s"] = benchmark::Counter(
      static_cast<double>(kSteps * kChains * macs_per_step),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kAvgThreads);
}

// One benchmark per chain kernel: `Chains` runs kSteps steps of `macs_per_step` each.
bool has_avx2() { return gemmax::kernel_path_supported(gemmax::KernelPath::kAvx2); }

template <auto Chains, int kMacsPerStep, bool (*Supported)() = has_avx2>
void bm_peak(benchmark::State& state) {
  if (!Supported()) {
    state.SkipWithError("not supported by this CPU");
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
BENCHMARK(bm_peak<f32_chains_512, 16, has_avx512>)
    ->Name("peak/f32_fma_avx512")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(bm_peak<bf16_chains_512, 32, has_avx512_bf16>)
    ->Name("peak/bf16_dpbf16_avx512")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(bm_peak<int8_chains_512, 64, has_avx512_vnni>)
    ->Name("peak/int8_vnni_avx512")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
