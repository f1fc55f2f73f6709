#include "tensor/dtype.h"

#include <gtest/gtest.h>

namespace gemmax {
namespace {

TEST(DType, RowBytesMatchBlockLayouts) {
  EXPECT_EQ(dtype_row_bytes(DType::kF32, 640), 2560);
  EXPECT_EQ(dtype_row_bytes(DType::kBF16, 640), 1280);
  EXPECT_EQ(dtype_row_bytes(DType::kQ8_0, 640), 20 * 34);
  EXPECT_EQ(dtype_row_bytes(DType::kQ4_K, 1024), 4 * 144);
  EXPECT_EQ(dtype_row_bytes(DType::kQ6_K, 2048), 8 * 210);
}

TEST(DType, RowBytesRejectsPartialBlocks) {
  EXPECT_THROW(dtype_row_bytes(DType::kQ4_K, 640), std::runtime_error);
  EXPECT_THROW(dtype_row_bytes(DType::kQ8_0, 33), std::runtime_error);
}

TEST(DType, UnknownIdIsRejected) {
  EXPECT_FALSE(dtype_layout(static_cast<DType>(99)).has_value());
  EXPECT_THROW(require_layout(static_cast<DType>(99)), std::runtime_error);
}

}  // namespace
}  // namespace gemmax
