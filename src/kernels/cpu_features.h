// CPU capabilities detected at run time. The project builds without -march flags so the binary runs
// on any x86-64 (or other) CPU; SIMD kernels are compiled with function-level target attributes and
// only called when these report support.
#pragma once

namespace gemmax {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;  // (and enabled by the OS) the BF16 panel prefill's wider microkernel
  bool avx512vl = false, avx512vnni = false;  // the quad tiles' 256-bit vpdpbusd
  bool avx512bw = false, avx512bf16 = false;  // BF16 weights by vdpbf16ps (BW: also VNNI's kernels)
  bool avx512vbmi = false;                    // the Q4_0 GEMV's byte permutes

  // Everything the AVX2 kernels use (AVX2 integer ops, FMA, F16C conversions).
  bool has_avx2_kernels() const { return avx2 && fma && f16c; }
  // With BW too: every CPU with AVX512-VNNI has it (Cascade Lake and later, Zen 4 and later), and
  // the K formats' VNNI GEMV spreads sub-block scales with byte shuffles.
  bool has_avx512_vnni() const {
    return has_avx2_kernels() && avx512f && avx512vl && avx512bw && avx512vnni;
  }
  bool has_avx512_vbmi() const { return has_avx512_vnni() && avx512vbmi; }
  bool has_avx512_bf16() const {
    return has_avx2_kernels() && avx512f && avx512bw && avx512vl && avx512bf16;
  }
};

// Detected once, then cached.
const CpuFeatures& cpu_features();

}  // namespace gemmax
