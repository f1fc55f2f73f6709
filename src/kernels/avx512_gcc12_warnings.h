// Included first by the files built for AVX-512 (matmul_kgemv_avx512.cc, matmul_kpanels_avx512.cc,
// matmul_qpanels_avx512.cc), and only by them.
//
// GCC 12's avx512fintrin.h builds the pass-through operand of many intrinsics (_mm512_cvtepi32_ps,
// _mm512_unpacklo_epi32, _mm512_srlv_epi32, ...) from a self-initialised "undefined" register,
// which -W(maybe-)uninitialized reports once inlined: false positives, gone in GCC 13's headers.
// The pragmas hold for the rest of the including file.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
