#include "runtime/shape.h"

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

TEST(ShapeTest, Basics) {
  const Shape s{8, 256, 384};
  EXPECT_EQ(s.rank(), 3);
  EXPECT_EQ(s.numel(), 8 * 256 * 384);
  EXPECT_EQ(s.dim(-1), 384);
  EXPECT_EQ(s.ToString(), "[8, 256, 384]");
  EXPECT_EQ(Shape().numel(), 1);  // a scalar
  EXPECT_EQ(Shape({3, 0}).numel(), 0);
  const Dims strides = ContiguousStrides(s);
  EXPECT_EQ(strides[0], 256 * 384);
  EXPECT_EQ(strides[1], 384);
  EXPECT_EQ(strides[2], 1);
}

TEST(ShapeTest, CreateRejectsNegativeSizes) {
  const int64_t dims[] = {4, -2, 3};
  testing::ExpectStatus(Shape::Create(dims).status(), absl::StatusCode::kInvalidArgument,
                        {"[4, -2, 3]", "negative size -2", "dimension 1"});
  const int64_t ok[] = {4, 2};
  EXPECT_EQ(Shape::Create(ok).value(), Shape({4, 2}));
}

TEST(ShapeDeathTest, DimOutOfRangeAborts) {
  EXPECT_DEATH(Shape({2, 3}).dim(2), "out of range");
}

}  // namespace
}  // namespace strata
