// Internal: byte layouts of GGML's block formats and per-block decoders shared by the dequantizer
// and the matmul kernels. Blocks are read through byte pointers (memcpy for multi-byte fields) so
// any alignment of the source buffer is fine. All offsets assume a little-endian host.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "tensor/half.h"

namespace gemmax::quant {

static_assert(std::endian::native == std::endian::little, "GGML blocks are little-endian");

constexpr int kQK = 32;    // elements per block of the *_0 / *_1 formats
constexpr int kQKK = 256;  // elements per super-block of the K formats

// Byte offsets inside each block (see GGML's ggml-common.h for the original definitions).
namespace q4_0 {  // f16 d | 16 bytes of nibbles: element j in low nibble of qs[j], j+16 in the high
                  // one
constexpr int kD = 0, kQs = 2, kBytes = 18;
}
namespace q4_1 {  // f16 d | f16 m | nibbles as Q4_0; value = d*q + m
constexpr int kD = 0, kM = 2, kQs = 4, kBytes = 20;
}
namespace q5_0 {  // f16 d | u32 qh (5th bit of element j at bit j) | nibbles as Q4_0; value =
                  // d*(q-16)
constexpr int kD = 0, kQh = 2, kQs = 6, kBytes = 22;
}
namespace q5_1 {  // f16 d | f16 m | u32 qh | nibbles; value = d*q + m
constexpr int kD = 0, kM = 2, kQh = 4, kQs = 8, kBytes = 24;
}
namespace q8_0 {  // f16 d | 32 x int8
constexpr int kD = 0, kQs = 2, kBytes = 34;
}
namespace q2_k {  // 16 x (4-bit min << 4 | 4-bit scale) | 64 bytes of 2-bit quants | f16 d | f16
                  // dmin
constexpr int kScales = 0, kQs = 16, kD = 80, kDmin = 82, kBytes = 84;
}
namespace q3_k {  // 32 bytes high-bit mask | 64 bytes 2-bit quants | 12 bytes of 6-bit scales | f16
                  // d
constexpr int kHmask = 0, kQs = 32, kScales = 96, kD = 108, kBytes = 110;
}
namespace q4_k {  // f16 d | f16 dmin | 12 bytes of 6-bit scales and mins | 128 bytes of nibbles
constexpr int kD = 0, kDmin = 2, kScales = 4, kQs = 16, kBytes = 144;
}
namespace q5_k {  // as Q4_K plus 32 bytes of fifth bits before the nibbles
constexpr int kD = 0, kDmin = 2, kScales = 4, kQh = 16, kQs = 48, kBytes = 176;
}
namespace q6_k {  // 128 bytes low nibbles | 64 bytes 2-bit highs | 16 x int8 scales | f16 d
constexpr int kQl = 0, kQh = 128, kScales = 192, kD = 208, kBytes = 210;
}

// Q5_0x4, the repacked Q5_0 (kernels/weight_repack.h): four consecutive blocks of a row (128
// elements, blocks m = 0..3) in one "quad", in the order the AVX2 kernels consume them (A8Quad's
// lanes: 8 bytes per block, block m in bytes 8m..8m+7 of each 32-byte group):
//   qs[8m + i]      (i < 8): block m's nibble byte i     (low: element i,     high: element 16 + i)
//   qs[32 + 8m + i] (i < 8): block m's nibble byte 8 + i (low: element 8 + i, high: element 24 + i)
//   qh[p] (p < 16): bit j (j < 4) = fifth bit of element 8j + p % 8 of block p / 8, bit 4 + j =
//       the same of block 2 + p / 8 (one 16-byte load, shifted, gives every fifth bit)
//   d[m]: block m's f16 scale.
// Same values, same 22 bytes per 32 elements as the stored blocks: one 32-byte load holds the
// nibbles that four scattered 8-byte loads and two unpacks gathered, and the fifth bits take three
// operations per 32 elements instead of five plus the gathering.
namespace q5_0x4 {
constexpr int kQs = 0, kQh = 64, kD = 80, kBytes = 88;
}

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return f16_to_f32(h);
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The eight 6-bit scales and mins of a Q4_K/Q5_K block (packed as k_scale_min below reads), as
// bytes j = 0..7 of (scales_lo, scales_hi) and of (mins_lo, mins_hi), found with word operations
// for the SIMD kernels to widen (the same values as k_scale_min).
struct KScaleBytes {
  uint32_t scales_lo, scales_hi, mins_lo, mins_hi;
};

inline KScaleBytes k_scale_bytes(const uint8_t* q) {
  const uint32_t a = load_u32(q), b = load_u32(q + 4), c = load_u32(q + 8);
  return {a & 0x3f3f3f3fu, (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4), b & 0x3f3f3f3fu,
          ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4)};
}

// Q4_K/Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: bytes 0-3 hold scales 0-3
// (low 6 bits) and the top 2 bits of scales 4-7; bytes 4-7 likewise for the mins; bytes 8-11 hold
// the low 4 bits of scale (low nibble) and min (high nibble) 4-7.
inline void k_scale_min(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q3_K packs sixteen 6-bit scales (stored with a +32 bias) into 12 bytes: bytes 0-7 hold the low
// nibbles (scale i in byte i%8, nibble i/8), bytes 8-11 the 2-bit high parts (scale i in byte
// 8+i%4, bits 2*(i/4)).
inline void q3_k_scales(const uint8_t* s, int out[16]) {
  for (int i = 0; i < 16; ++i) {
    const int low = (s[i % 8] >> (4 * (i / 8))) & 0x0f;
    const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 0x03;
    out[i] = (low | (high << 4)) - 32;
  }
}

// Scalar decoders of one block each; `y` receives the block's elements in order.
void dequant_block_q4_0(const uint8_t* b, float* y);
void dequant_block_q4_1(const uint8_t* b, float* y);
void dequant_block_q5_0(const uint8_t* b, float* y);
void dequant_block_q5_1(const uint8_t* b, float* y);
void dequant_block_q8_0(const uint8_t* b, float* y);
void dequant_block_q2_k(const uint8_t* b, float* y);
void dequant_block_q3_k(const uint8_t* b, float* y);
void dequant_block_q4_k(const uint8_t* b, float* y);
void dequant_block_q5_k(const uint8_t* b, float* y);
void dequant_block_q6_k(const uint8_t* b, float* y);

}  // namespace gemmax::quant
