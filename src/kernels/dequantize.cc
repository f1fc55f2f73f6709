// Scalar reference dequantizers. Every product is evaluated in the same order as GGML's reference
// (scale products first, e.g. (d * sc) * q - (dmin * m)) so results match gguf-py bit for bit.
#include "kernels/dequantize.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/quant_blocks.h"
#include "kernels/weight_repack.h"
#include "tensor/half.h"

namespace gemmax {
namespace quant {

void dequant_block_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b + q4_0::kD);
  const uint8_t* qs = b + q4_0::kQs;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
    y[j + kQK / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void dequant_block_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b + q4_1::kD);
  const float m = load_f16(b + q4_1::kM);
  const uint8_t* qs = b + q4_1::kQs;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
    y[j + kQK / 2] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

// Element j (< 16) takes the low nibble of qs[j] and bit j of qh; element j + 16 the high nibble
// and bit j + 16.
static void q5_values(const uint8_t* qs, uint32_t qh, int* q) {
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    q[j + kQK / 2] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + kQK / 2)) & 1u) << 4);
  }
}

void dequant_block_q5_0(const uint8_t* b, float* y) {
  const float d = load_f16(b + q5_0::kD);
  int q[kQK];
  q5_values(b + q5_0::kQs, load_u32(b + q5_0::kQh), q);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j] - 16);
}

void dequant_block_q5_1(const uint8_t* b, float* y) {
  const float d = load_f16(b + q5_1::kD);
  const float m = load_f16(b + q5_1::kM);
  int q[kQK];
  q5_values(b + q5_1::kQs, load_u32(b + q5_1::kQh), q);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j]) + m;
}

void dequant_block_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b + q8_0::kD);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + q8_0::kQs);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// Q2_K: element e = 128h + 32s + l (h < 2, s < 4, l < 32) is bits 2s..2s+1 of qs[32h + l]; each 16
// elements share a 4-bit scale (low nibble) and 4-bit min (high nibble) from scales[e / 16].
void dequant_block_q2_k(const uint8_t* b, float* y) {
  const float d = load_f16(b + q2_k::kD);
  const float dmin = load_f16(b + q2_k::kDmin);
  const uint8_t* scales = b + q2_k::kScales;
  for (int e0 = 0; e0 < kQKK; e0 += 16) {
    const float dl = d * static_cast<float>(scales[e0 / 16] & 0x0f);
    const float ml = dmin * static_cast<float>(scales[e0 / 16] >> 4);
    const uint8_t* q = b + q2_k::kQs + (e0 / 128) * 32 + e0 % 32;
    const int shift = 2 * ((e0 % 128) / 32);
    for (int l = 0; l < 16; ++l) y[e0 + l] = dl * static_cast<float>((q[l] >> shift) & 3) - ml;
  }
}

// Q3_K: 2 low bits laid out as in Q2_K; the third bit is bit e/32 of hmask[e % 32], and a CLEAR bit
// subtracts 4. Each 16 elements share a signed 6-bit scale.
void dequant_block_q3_k(const uint8_t* b, float* y) {
  const float d = load_f16(b + q3_k::kD);
  int scales[16];
  q3_k_scales(b + q3_k::kScales, scales);
  const uint8_t* hmask = b + q3_k::kHmask;
  for (int e0 = 0; e0 < kQKK; e0 += 16) {
    const float dl = d * static_cast<float>(scales[e0 / 16]);
    const uint8_t* q = b + q3_k::kQs + (e0 / 128) * 32 + e0 % 32;
    const uint8_t* hm = hmask + e0 % 32;
    const int shift = 2 * ((e0 % 128) / 32), hbit = e0 / 32;
    for (int l = 0; l < 16; ++l) {
      const int low = (q[l] >> shift) & 3;
      y[e0 + l] = dl * static_cast<float>(low - (((hm[l] >> hbit) & 1) ? 0 : 4));
    }
  }
}

// Q4_K: chunk c of 64 elements reads qs[32c .. 32c+31]; low nibbles are sub-block 2c, high 2c+1.
void dequant_block_q4_k(const uint8_t* b, float* y) {
  const float d = load_f16(b + q4_k::kD);
  const float dmin = load_f16(b + q4_k::kDmin);
  const uint8_t* qs = b + q4_k::kQs;
  for (int sub = 0; sub < 8; ++sub) {
    int sc, m;
    k_scale_min(sub, b + q4_k::kScales, &sc, &m);
    const float dl = d * static_cast<float>(sc);
    const float ml = dmin * static_cast<float>(m);
    const uint8_t* q = qs + (sub / 2) * 32;
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l)
      y[sub * 32 + l] = dl * static_cast<float>((q[l] >> shift) & 0x0f) - ml;
  }
}

// Q5_K: nibbles as Q4_K; the fifth bit of sub-block s is bit s of qh[l].
void dequant_block_q5_k(const uint8_t* b, float* y) {
  const float d = load_f16(b + q5_k::kD);
  const float dmin = load_f16(b + q5_k::kDmin);
  const uint8_t* qs = b + q5_k::kQs;
  const uint8_t* qh = b + q5_k::kQh;
  for (int sub = 0; sub < 8; ++sub) {
    int sc, m;
    k_scale_min(sub, b + q5_k::kScales, &sc, &m);
    const float dl = d * static_cast<float>(sc);
    const float ml = dmin * static_cast<float>(m);
    const uint8_t* q = qs + (sub / 2) * 32;
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 0x0f) | (((qh[l] >> sub) & 1) << 4);
      y[sub * 32 + l] = dl * static_cast<float>(v) - ml;
    }
  }
}

// Q6_K: half h (128 elements) uses ql[64h..64h+63] and qh[32h..32h+31]. Within a half, quarter s
// (32 elements) takes low nibbles from ql[64h + 32*(s%2) + l] (high nibble when s >= 2) and 2 high
// bits from qh[32h + l] at shift 2s. Each 16 elements share one int8 scale.
void dequant_block_q6_k(const uint8_t* b, float* y) {
  const float d = load_f16(b + q6_k::kD);
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + q6_k::kScales);
  for (int e0 = 0; e0 < kQKK; e0 += 16) {
    const int h = e0 / 128, s = (e0 % 128) / 32, l0 = e0 % 32;
    const uint8_t* ql = b + q6_k::kQl + 64 * h + 32 * (s % 2) + l0;
    const uint8_t* qh = b + q6_k::kQh + 32 * h + l0;
    const float dl = d * static_cast<float>(scales[e0 / 16]);
    for (int l = 0; l < 16; ++l) {
      const int low = (ql[l] >> (4 * (s / 2))) & 0x0f;
      const int high = (qh[l] >> (2 * s)) & 3;
      y[e0 + l] = dl * static_cast<float>((low | (high << 4)) - 32);
    }
  }
}

// A Q5_0x4 quad (128 elements): its four Q5_0 blocks restored, then decoded as stored.
void dequant_quad_q5_0(const uint8_t* b, float* y) {
  uint8_t blocks[4 * q5_0::kBytes];
  deinterleave_quad_q5_0(b, blocks);
  for (int m = 0; m < 4; ++m) dequant_block_q5_0(blocks + m * q5_0::kBytes, y + m * kQK);
}

}  // namespace quant

namespace {

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_decoder(DType t) {
  switch (t) {
    case DType::kQ4_0:
      return quant::dequant_block_q4_0;
    case DType::kQ4_1:
      return quant::dequant_block_q4_1;
    case DType::kQ5_0:
      return quant::dequant_block_q5_0;
    case DType::kQ5_1:
      return quant::dequant_block_q5_1;
    case DType::kQ8_0:
      return quant::dequant_block_q8_0;
    case DType::kQ2_K:
      return quant::dequant_block_q2_k;
    case DType::kQ3_K:
      return quant::dequant_block_q3_k;
    case DType::kQ4_K:
      return quant::dequant_block_q4_k;
    case DType::kQ5_K:
      return quant::dequant_block_q5_k;
    case DType::kQ6_K:
      return quant::dequant_block_q6_k;
    case DType::kQ5_0x4:
      return quant::dequant_quad_q5_0;
    default:
      return nullptr;
  }
}

void dequantize_plain(DType t, const uint8_t* src, float* dst, int64_t n) {
  if (t == DType::kF32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, sizeof h);
    dst[i] = t == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
  }
}

}  // namespace

void dequantize_row(DType t, const std::byte* src, float* dst, int64_t n) {
  const auto layout = dtype_layout(t);
  const bool plain = t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
  const BlockFn decode = block_decoder(t);
  if (!layout || (!plain && decode == nullptr)) {
    throw std::runtime_error("dequantize_row: unsupported format " + std::string(dtype_name(t)) +
                             " (type id " + std::to_string(static_cast<uint32_t>(t)) + ")");
  }
  if (n < 0 || n % layout->block_size != 0) {
    throw std::runtime_error("dequantize_row: " + std::string(layout->name) +
                             " needs a multiple of " + std::to_string(layout->block_size) +
                             " elements, got " + std::to_string(n));
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(src);
  if (plain) {
    dequantize_plain(t, bytes, dst, n);
    return;
  }
  const int64_t n_blocks = n / layout->block_size;
  for (int64_t i = 0; i < n_blocks; ++i) {
    decode(bytes + i * layout->block_bytes, dst + i * layout->block_size);
  }
}

}  // namespace gemmax
