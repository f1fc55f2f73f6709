#include "kernels/weight_repack.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/quant_blocks.h"

namespace gemmax {
namespace quant {
namespace {

// Byte of the repacked fifth bits that holds element e (< 32) of block m (< 4), and the bit of
// element e's group (e / 8) in it: lane 8 (m % 2) + e % 8 of A8Quad group e / 8, in the high
// nibble for blocks 2 and 3.
int qh_byte(int m, int e) { return 8 * (m % 2) + e % 8; }
int qh_bit(int m, int e) { return e / 8 + (m >= 2 ? 4 : 0); }

}  // namespace

void interleave_quad_q5_0(const uint8_t* blocks, uint8_t* quad) {
  std::memset(quad + q5_0x4::kQh, 0, 16);
  for (int m = 0; m < 4; ++m) {
    const uint8_t* b = blocks + m * q5_0::kBytes;
    std::memcpy(quad + q5_0x4::kQs + 8 * m, b + q5_0::kQs, 8);
    std::memcpy(quad + q5_0x4::kQs + 32 + 8 * m, b + q5_0::kQs + 8, 8);
    std::memcpy(quad + q5_0x4::kD + 2 * m, b + q5_0::kD, 2);
    // Byte i of this block's half: bit j = bit 8j + i of qh. The four bits, at 0, 8, 16 and 24
    // after the shift and mask, meet in the top byte of the product as bits 0-3 (no carries: the
    // lower bytes sum to at most 14).
    const uint32_t qh = load_u32(b + q5_0::kQh);
    for (int i = 0; i < 8; ++i) {
      const uint32_t nibble = (((qh >> i) & 0x01010101u) * 0x01020408u) >> 24;
      quad[q5_0x4::kQh + qh_byte(m, i)] |= static_cast<uint8_t>(nibble << qh_bit(m, 0));
    }
  }
}

void deinterleave_quad_q5_0(const uint8_t* quad, uint8_t* blocks) {
  for (int m = 0; m < 4; ++m) {
    uint8_t* b = blocks + m * q5_0::kBytes;
    std::memcpy(b + q5_0::kQs, quad + q5_0x4::kQs + 8 * m, 8);
    std::memcpy(b + q5_0::kQs + 8, quad + q5_0x4::kQs + 32 + 8 * m, 8);
    std::memcpy(b + q5_0::kD, quad + q5_0x4::kD + 2 * m, 2);
    uint32_t qh = 0;
    for (int e = 0; e < kQK; ++e)
      qh |= static_cast<uint32_t>((quad[q5_0x4::kQh + qh_byte(m, e)] >> qh_bit(m, e)) & 1u) << e;
    std::memcpy(b + q5_0::kQh, &qh, 4);
  }
}

}  // namespace quant

std::optional<DType> repacked_dtype(DType t, int64_t cols) {
  if (t == DType::kQ5_0 && cols > 0 && cols % (4 * quant::kQK) == 0) return DType::kQ5_0x4;
  return std::nullopt;
}

size_t repacked_bytes(const TensorView& w) { return static_cast<size_t>(w.rows() * w.row_bytes()); }

TensorView repacked_view(const TensorView& w, std::byte* dst) {
  TensorView out = w;
  out.dtype = repacked_dtype(w.dtype, w.cols()).value();
  out.data = dst;
  out.nbytes = repacked_bytes(w);
  return out;
}

TensorView repack_weight(const TensorView& w, std::byte* dst_bytes, ThreadPool* pool) {
  const std::optional<DType> to = repacked_dtype(w.dtype, w.cols());
  if (!to) {
    throw std::invalid_argument("repack_weight: tensor '" + w.name + "' (" +
                                std::string(dtype_name(w.dtype)) + ", shape " +
                                shape_string(w.shape) + ") has no repacked layout");
  }
  const int64_t rows = w.rows(), row_bytes = w.row_bytes();
  if (w.data == nullptr || static_cast<int64_t>(w.nbytes) < rows * row_bytes) {
    throw std::invalid_argument("repack_weight: tensor '" + w.name + "' holds " +
                                std::to_string(w.nbytes) + " bytes, needs " +
                                std::to_string(rows * row_bytes));
  }
  const TensorView out = repacked_view(w, dst_bytes);
  const int64_t quads = w.cols() / (4 * quant::kQK);
  const auto* src = reinterpret_cast<const uint8_t*>(w.data);
  auto* dst = reinterpret_cast<uint8_t*>(dst_bytes);
  auto rows_fn = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < quads; ++g)
        quant::interleave_quad_q5_0(src + r * row_bytes + g * quant::q5_0x4::kBytes,
                                    dst + r * row_bytes + g * quant::q5_0x4::kBytes);
  };
  if (pool != nullptr)
    pool->parallel_for(rows, 64, rows_fn);
  else
    rows_fn(0, rows);
  return out;
}

}  // namespace gemmax
