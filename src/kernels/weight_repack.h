// Load-time repacking of weights into the layouts the AVX2 kernels read faster. Q5_0 rows become
// Q5_0x4 (quant_blocks.h): the same bytes per row and the same values, so every product is
// bit-identical, but a GEMV unpacks a quad of blocks with about half the vector operations
// (kernels_bench gemv/Q5_0 vs Q5_0x4, one thread: 8.9-12.9 -> 16.2-19.2 GB/s; Q5_0 was
// compute-bound at two threads). Q5_0 is what llama.cpp's K mixes store for rows that are not a
// multiple of 256 (the 270M's and 1B's hidden sizes). Q4_0 was tried too and gains less (gemv 1
// thread 13.5-16.8 -> 14.0-20.0 GB/s) while on a Q4_0 file the copy is every weight (4B: 2.2 GB,
// load 0.4 -> 4.6 s on huge pages; ordinary pages fault in at ~1.3-1.7 GB/s on this VM, so still
// over a second), so it is used as stored, like Q8_0, the K formats and the floats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "kernels/thread_pool.h"
#include "tensor/tensor_view.h"

namespace gemmax {

// The repacked format for a weight stored as `t` with `cols` elements per row, or nullopt when
// the stored layout is used as is (other formats, rows not a multiple of 128 elements).
std::optional<DType> repacked_dtype(DType t, int64_t cols);

// Bytes of w's repacked copy (its rows x row bytes: the layouts take the same room).
size_t repacked_bytes(const TensorView& w);

// The view of w's repacked copy at `dst`: w's name and shape, the repacked dtype (which must
// exist).
TensorView repacked_view(const TensorView& w, std::byte* dst);

// Repacks every row of `w` (whose repacked_dtype must exist) into `dst`, which holds at least
// repacked_bytes(w), split over `pool` when given; returns the view of the copy (w's name and
// shape, the repacked dtype). Throws std::invalid_argument naming the tensor otherwise.
TensorView repack_weight(const TensorView& w, std::byte* dst, ThreadPool* pool);

namespace quant {
// One quad: four consecutive Q5_0 blocks -> Q5_0x4, and back (the dequantizer and the scalar
// kernels read a quad by restoring its blocks).
void interleave_quad_q5_0(const uint8_t* blocks, uint8_t* quad);
void deinterleave_quad_q5_0(const uint8_t* quad, uint8_t* blocks);
}  // namespace quant

}  // namespace gemmax
