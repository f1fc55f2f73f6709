// Internal interface between the matmul driver (matmul.cc) and the AVX2 row kernels
// (matmul_avx2.cc): activation formats and per-format row-dot functions.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace gemmax::detail {

// Activations quantized to int8 for the integer dot products: value ~= d * q, |q| <= 127.
// Weights with 32-element blocks (Q4_0..Q8_0) pair with A8Block32, K formats with A8Block256.
struct A8Block32 {
  float d;
  float sum;  // d * sum(q): the term the *_1 formats' per-block minimum multiplies
  int8_t q[32];
};

struct A8Block256 {
  float d;
  int16_t bsums[16];  // sum(q) of each 16 elements: the term K-format mins and offsets multiply
  int8_t q[256];
};

// Four 32-element blocks, laid out the way the Q4_0/Q5_0/Q8_0 kernels unpack four weight blocks:
// q[j] holds elements 8j..8j+7 of block 0, 1, 2, 3 in its bytes 0-7, 8-15, 16-23, 24-31. The int16
// pair sums of the four registers' products are added before widening (exact for unsigned 5-bit
// weights: 4 * 2 * 31 * 127 < 32767), after which int32 lane l belongs to block l / 2: one
// convert and one FMA per four blocks. sums16[l] is 16 times the sum of the 16 activation values
// that lane l multiplies (the term the unsigned Q5_0 weights' offset of 16 multiplies; Q4_0's
// offset of 8 halves it). Missing blocks at the end of a row are zero (d = 0, q = 0).
struct A8Quad {
  float d[8];         // d of block l / 2 in lane l
  int32_t sums16[8];  // per lane: 16 * (sum of its 16 activation values)
  int8_t q[4][32];
};

// kF32Pairs: f32 with each 16 elements reordered as the 8 even ones then the 8 odd ones (the
// order in which the BF16 pair kernels widen a 32-byte load of 16 weights); a tail of k % 16
// elements stays in order.
// kBF16: the activations rounded to bf16 (round to nearest even), in order, for vdpbf16ps
// (matmul_bf16dot_avx512.cc).
enum class ActFormat { kF32, kA8x32, kA8x256, kA8Quad, kF32Pairs, kBF16 };
constexpr int kActFormats = 6;

// Dot product of one weight row (k elements in its block format) with one prepared activation row.
using RowDotFn = float (*)(const uint8_t* w_row, const void* act_row, int64_t k);

// RowKernel::tile_rows weight rows (row_bytes apart) x RowKernel::tile_tokens prepared activation
// rows (act_stride bytes apart): out[t * ldo + r] = the RowDotFn of row r and token t, bit for bit
// (ldo: the output's row length, so a tile writes straight into y).
using TokensFn = void (*)(const uint8_t* w, size_t row_bytes, const uint8_t* act, size_t act_stride,
                          int64_t k, float* out, size_t ldo);

// The same tile over the elements [k0, k1) of each row, for kernels that sum a row span by span
// (RowKernel::span > 0): k0 is a multiple of the span and k1 is k or one. Each span's dot is
// stored (k0 == 0) or added to out, in span order, exactly as one call over [0, k) and the
// RowDotFn do, so a prefill can cut long rows into passes that keep a tile's activations in L1.
using TokensSpanFn = void (*)(const uint8_t* w, size_t row_bytes, const uint8_t* act,
                              size_t act_stride, int64_t k0, int64_t k1, int64_t k, float* out,
                              size_t ldo);

// n_rows consecutive weight rows (row_bytes apart) x one prepared activation row: y[r] = the
// RowDotFn of row r, bit for bit. Saves an indirect call per row in a GEMV (262144 for the LM
// head).
using RowsFn = void (*)(const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* act_row,
                        int64_t k, float* y);

// A per-thread buffer that only grows, so steady-state calls do not allocate: buf's data, at least
// n elements.
template <typename T>
T* scratch(std::vector<T>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Rows of 16-bit weights are summed in FMA chains whose lanes each see one residue class of the
// row's elements (matmul_avx2.cc): kChain8, one chain (lane l: elements 8g + l); kPairs16, the BF16
// pair kernels' even and odd chains (elements 16i + 2l and 16i + 2l + 1), restarted every
// kPairSpan elements; kGroups16, tile_half's two chains over the even and the odd groups of 8
// (elements 16i + l and 16i + 8 + l), the long rows of F16 weights. A panel GEMM that runs the
// same chains gives the same bits. kDot32: BF16 weights by vdpbf16ps (matmul_bf16dot_avx512.cc),
// lane l of one chain summing the pair words 16i + l of the row and of the bf16 activations.
enum class PanelScheme { kNone, kChain8, kPairs16, kDot32, kGroups16 };
constexpr int kPanelSchemes = 5;
constexpr int64_t kPairSpan = 2048;

// y[t * ldy + r] for n_rows weight rows (row_bytes apart) and n_tokens activation rows prepared in
// the kernel's ActFormat (act_stride bytes apart), k elements each: a whole prefill of one
// weight's row range.
using KPanelFn = void (*)(const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* act,
                          size_t act_stride, int64_t n_tokens, int64_t k, float* y, size_t ldy);

// The largest prefill tile.
constexpr int kMaxTileTokens = 8, kMaxTileRows = 2;

struct RowKernel {
  ActFormat act = ActFormat::kF32;
  RowDotFn dot = nullptr;          // null: no specialised kernel for this format
  TokensFn tokens = nullptr;       // prefill tile, when the format has one
  TokensFn tokens_1row = nullptr;  // the same for one row (rows left over from tile_rows)
  int tile_rows = 0, tile_tokens = 0;
  RowsFn rows = nullptr;  // GEMV over a row range, when the format has one
  int64_t span = 0;       // > 0: rows are summed in spans of this many elements (TokensSpanFn)
  TokensSpanFn tokens_span = nullptr, tokens_span_1row = nullptr;  // tokens(_1row) over [k0, k1)
  PanelScheme panel = PanelScheme::kNone;  // the chains of a 16-bit kernel, for a panel prefill
  bool panel_wide = false;                 // panel_rows' AVX-512 microkernels (CPU has AVX-512F)
  bool panel_f16 = false;                  // the weights are F16 (else BF16)
  KPanelFn kpanel = nullptr;  // VNNI panel GEMM (kpanel_function, quad_panel_function): prefills
  int64_t kpanel_min_tokens = 0;  // of at least this many tokens
};

// ---- register helpers ----

// The sum of 8 lanes in one fixed order (halves, then pairs, then the two), the last step of every
// 8-lane row chain (the AVX2 and VNNI tiles, the 512-bit quad GEMVs): kernels that must give the
// same bits share it.
__attribute__((target("avx2,fma,f16c"))) inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- weight streams ----

// Weight rows are streamed front to back; the hardware prefetcher alone left a 2-thread GEMV of the
// 178 MB LM head at ~18 GB/s. Asking for the line one page (4 KiB) ahead reached ~27 GB/s, the
// machine's read bandwidth (bench/kernels_bench, lm_head, 1-8 KiB tried: 2-6 KiB were best).
// Prefetching past the end of a tensor is harmless (a prefetch never faults). Into L2 (T1), not
// L1: on the Intel AVX-512 host a whole decode ran 8-10% faster (1B Q8_0 19.4 -> 21.6 tok/s, 4B
// Q4_K_M 8.15 -> 8.6-8.8, interleaved), presumably because L1-bound prefetches hold one of the few
// L1 fill buffers until their line arrives; T2, and 2 or 8 KiB ahead, measured the same as T1.
constexpr int kPrefetchBytes = 4096;

inline void prefetch_ahead(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes), _MM_HINT_T1);
}

// The lines of the next `bytes` bytes after p, one page ahead (K-format blocks span 2-4 lines).
inline void prefetch_ahead(const uint8_t* p, int bytes) {
  for (int off = 0; off < bytes; off += 64) prefetch_ahead(p + off);
}

// The first kPrefetchBytes of each of `streams` streams `part_bytes` apart from w: the lines the
// GEMV's own prefetch (kPrefetchBytes ahead) never asks for. In the row GEMVs' 4 streams: 270M
// Q4_0 decode +2-5% (3 interleaved pairs), 270M Q8_0 and 1B Q4_0 within noise; at the start of
// rows_k it changed nothing (real 270M Q4_K_M, 1B Q4_K_M), so it is not used there.
inline void prefetch_stream_heads(const uint8_t* w, size_t part_bytes, int64_t streams) {
  const size_t head = std::min<size_t>(part_bytes, kPrefetchBytes);
  for (int64_t s = 0; s < streams; ++s)
    for (size_t off = 0; off < head; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w + s * part_bytes + off), _MM_HINT_T1);
}

// The integer sums of a decode GEMV group of 8 K-format rows (rows_k), row i at first + i *
// row_stride, over their blocks [0, nb), block by block (block b of every row, then b + 1): block
// b of row i has its S and M spread over 8 int32 lanes at s[8 * b + i] and m[8 * b + i], its f16 d
// and dmin at d[8 * b + i] and dmin[8 * b + i]; `a` points at the rows' first activation block.
using KGroupSumsFn = void (*)(const uint8_t* first, size_t row_stride, const A8Block256* a,
                              int64_t nb, __m256i* s, __m256i* m, uint16_t* d, uint16_t* dmin);

// The 512-bit VNNI sums of Q4_K, Q5_K and Q6_K groups (matmul_kgemv_avx512.cc; Q6_K's fill
// neither m nor dmin). Only call them when cpu_features().has_avx512_vnni().
void q4_k_group_sums_avx512(const uint8_t* first, size_t row_stride, const A8Block256* a,
                            int64_t nb, __m256i* s, __m256i* m, uint16_t* d, uint16_t* dmin);
void q5_k_group_sums_avx512(const uint8_t* first, size_t row_stride, const A8Block256* a,
                            int64_t nb, __m256i* s, __m256i* m, uint16_t* d, uint16_t* dmin);
void q6_k_group_sums_avx512(const uint8_t* first, size_t row_stride, const A8Block256* a,
                            int64_t nb, __m256i* s, __m256i* m, uint16_t* d, uint16_t* dmin);

// 512-bit GEMVs over A8Quad activations (matmul_quad_gemv_avx512.cc), for rows of whole quads (k
// a multiple of 128): the same bits as the VNNI quad tiles' GEMV. Only call them when
// cpu_features().has_avx512_vbmi().
void q4_0_rows_vbmi(const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* act, int64_t k,
                    float* y);
void q5_0x4_rows_vbmi(const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* act,
                      int64_t k, float* y);

// ---- prefill by packed panels (matmul_panels_avx2.cc) ----

// Whether rows of k elements can go through panels of scheme s (k a multiple of its classes).
bool panel_supported(PanelScheme s, int64_t k);

// Tokens per panel tile for panel_rows(wide): activations are packed in tiles of that many tokens
// (the last padded with zeros), the token count of its microkernel.
int panel_tile_tokens(bool wide);

// 32-bit words of one packed tile of `tile` tokens of k elements: tile * k floats, or tile * k / 2
// bf16 pair words for kDot32.
size_t panel_tile_floats(PanelScheme s, int tile, int64_t k);

// Words of the packed activations of n_tokens rows of k elements (whole tiles of `tile`).
size_t panel_act_floats(PanelScheme s, int64_t n_tokens, int64_t k, int tile);

// Packs tokens [0, n_valid) of x (rows of k floats, n_valid <= tile) into one tile of
// panel_tile_floats(s, tile, k) words, in scheme s's class order; tokens past n_valid are zeros.
void pack_panel_tile(PanelScheme s, int tile, const float* x, int64_t k, int n_valid, float* out);

// y[t * ldy + r] for n_rows BF16 (F16 if f16) weight rows (row_bytes apart) and the n_tokens
// packed tokens of xp (tiles of panel_tile_tokens(wide)): the same bits as the scheme's row kernel
// gives token t alone. wide: AVX-512 microkernels (32 rows x 8 tokens; only when the CPU has
// AVX-512F), else AVX2 (16 rows x 6 tokens); the same bits either way. kPairs16 and kDot32 are
// BF16 only.
void panel_rows(PanelScheme s, bool wide, bool f16, const uint8_t* w, size_t row_bytes,
                int64_t n_rows, const float* xp, int64_t n_tokens, int64_t k, float* y, size_t ldy);

// ---- integer prefill by packed int8 panels (matmul_kpanels_avx512.cc, matmul_qpanels_avx512.cc)

// Rows per packed block (one int32 lane each).
constexpr int kKPanelRows = 16;

// The VNNI panel GEMM of Q4_K/Q5_K/Q6_K (null for other formats): the same bits as the format's
// row kernel gives each token alone. Only call it when cpu_features().has_avx512_vnni().
KPanelFn kpanel_function(DType t);

// The same for Q4_0/Q5_0/Q5_0x4/Q8_0 (matmul_qpanels_avx512.cc): the same bits as their quad
// tiles. Only call it when cpu_features().has_avx512_vnni().
KPanelFn quad_panel_function(DType t);

// The AVX2 kernel of a weight format for rows of `cols` elements (F16/BF16 pick their scheme by
// row length; dot == nullptr when there is none). Only call when the CPU has AVX2+FMA+F16C.
RowKernel avx2_row_kernel(DType t, int64_t cols, int64_t rows);
// The same with the quad formats' (Q4_0/Q5_0/Q5_0x4/Q8_0) VNNI tiles on or off; vnni only when
// cpu_features().has_avx512_vnni(). Both give the same bits (tests compare them).
RowKernel avx2_row_kernel(DType t, int64_t cols, int64_t rows, bool vnni);

// The same with the BF16 vdpbf16ps kernels on or off (bf16_dot only when
// cpu_features().has_avx512_bf16(); they take rows whose length is a multiple of 32).
RowKernel avx2_row_kernel(DType t, int64_t cols, int64_t rows, bool vnni, bool bf16_dot);

// ---- BF16 weights by vdpbf16ps (matmul_bf16dot_avx512.cc; AVX512-BF16 CPUs only) ----

// One row of k activations (k a multiple of 32) rounded to bf16 (ActFormat::kBF16).
void bf16_act_row(const float* x, int64_t k, void* out);
// The row dot and the GEMV of the vdpbf16ps chain scheme (k a multiple of 32).
RowDotFn bf16_dot_row();
RowsFn bf16_dot_rows();
// Packs one tile of 8 tokens (n_valid of them real) for panel_rows_dot32.
void pack_dot32_tile(const float* x, int64_t k, int n_valid, uint32_t* out);
// Rows [0, n_rows) x n_tokens tokens from packed tiles tile_words apart: the same bits as
// bf16_dot_rows gives each token.
void panel_rows_dot32(const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint32_t* xp,
                      size_t tile_words, int64_t n_tokens, int64_t k, float* y, size_t ldy);

// f32 dot product with AVX2/FMA (used after dequantizing formats without a specialised kernel).
float avx2_dot_f32(const float* a, const float* b, int64_t k);

// Bytes of one prepared activation row of k elements.
size_t act_row_bytes(ActFormat f, int64_t k);

// Quantizes (kF32Pairs: reorders, kF32: copies) one row of k activations (k a multiple of the
// block size) into `out` (AVX2 code: only call on the avx2 path).
void quantize_act_row(ActFormat f, const float* x, int64_t k, void* out);

}  // namespace gemmax::detail
