// Tests of Shape: validation, element counts, printing, negative dimension indices and strides.
#include "runtime/shape.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;

TEST(ShapeTest, RankSizesAndNumel) {
  const Shape s{8, 256, 384};
  EXPECT_EQ(s.rank(), 3);
  EXPECT_EQ(s[0], 8);
  EXPECT_EQ(s[2], 384);
  EXPECT_EQ(s.numel(), int64_t{8} * 256 * 384);
  EXPECT_EQ(std::vector<int64_t>(s.dims().begin(), s.dims().end()),
            (std::vector<int64_t>{8, 256, 384}));
  EXPECT_EQ(Shape().rank(), 0);
  EXPECT_EQ(Shape().numel(), 1);  // a scalar has one element
  EXPECT_EQ(Shape({3, 0}).numel(), 0);
  EXPECT_EQ(Shape({0}).numel(), 0);
  EXPECT_EQ(Shape({1, 1, 1}).numel(), 1);
  // Larger than 32 bits.
  EXPECT_EQ(Shape({1 << 20, 1 << 20, 3}).numel(), int64_t{3} << 40);
  // Deeper than the inline capacity of Dims.
  const Shape deep{2, 1, 3, 1, 2, 1, 2, 5};
  EXPECT_EQ(deep.rank(), 8);
  EXPECT_EQ(deep.numel(), 120);
}

TEST(ShapeTest, ToString) {
  EXPECT_EQ(Shape({8, 256, 384}).ToString(), "[8, 256, 384]");
  EXPECT_EQ(Shape({5}).ToString(), "[5]");
  EXPECT_EQ(Shape().ToString(), "[]");
  EXPECT_EQ(Shape({0, 3}).ToString(), "[0, 3]");
}

TEST(ShapeTest, DimCountsFromTheEndForNegativeIndices) {
  const Shape s{2, 3, 5};
  EXPECT_EQ(s.dim(0), 2);
  EXPECT_EQ(s.dim(2), 5);
  EXPECT_EQ(s.dim(-1), 5);
  EXPECT_EQ(s.dim(-2), 3);
  EXPECT_EQ(s.dim(-3), 2);
}

TEST(ShapeTest, EqualityComparesEveryDimension) {
  EXPECT_EQ(Shape({2, 3}), Shape({2, 3}));
  EXPECT_NE(Shape({2, 3}), Shape({3, 2}));
  EXPECT_NE(Shape({2, 3}), Shape({2, 3, 1}));
  EXPECT_NE(Shape({1}), Shape());
  EXPECT_EQ(Shape(), Shape());
  const int64_t dims[] = {4, 1, 7};
  EXPECT_EQ(Shape(absl::MakeConstSpan(dims)), Shape({4, 1, 7}));
}

TEST(ShapeTest, CreateAcceptsValidSizes) {
  const int64_t ok[] = {4, 0, 2};
  EXPECT_EQ(Shape::Create(ok).value(), Shape({4, 0, 2}));
  EXPECT_EQ(Shape::Create({}).value(), Shape());
  // Zero elements: no overflow even when the other sizes are huge.
  const int64_t big_but_empty[] = {int64_t{1} << 62, int64_t{1} << 62, 0};
  EXPECT_EQ(Shape::Create(big_but_empty).value().numel(), 0);
  const int64_t max[] = {std::numeric_limits<int64_t>::max(), 1};
  EXPECT_EQ(Shape::Create(max).value().numel(), std::numeric_limits<int64_t>::max());
}

TEST(ShapeTest, CreateRejectsNegativeSizesNamingTheDimension) {
  const int64_t dims[] = {4, -2, 3};
  ExpectStatus(Shape::Create(dims).status(), absl::StatusCode::kInvalidArgument,
               {"[4, -2, 3]", "negative size -2", "dimension 1"});
  const int64_t first[] = {-1};
  ExpectStatus(Shape::Create(first).status(), absl::StatusCode::kInvalidArgument,
               {"[-1]", "negative size -1", "dimension 0"});
  const int64_t last[] = {1, 2, 3, -7};
  ExpectStatus(Shape::Create(last).status(), absl::StatusCode::kInvalidArgument,
               {"negative size -7", "dimension 3"});
}

TEST(ShapeTest, CreateRejectsSizesWhoseProductOverflows) {
  const int64_t dims[] = {int64_t{1} << 32, int64_t{1} << 32};
  ExpectStatus(Shape::Create(dims).status(), absl::StatusCode::kInvalidArgument,
               {"[4294967296, 4294967296]", "more than 2^63 - 1 elements"});
  const int64_t three[] = {1 << 21, 1 << 21, 1 << 21};
  ExpectStatus(Shape::Create(three).status(), absl::StatusCode::kInvalidArgument,
               {"more than 2^63 - 1 elements"});
}

TEST(ShapeTest, ContiguousStridesAreRowMajor) {
  const Dims strides = ContiguousStrides(Shape{8, 256, 384});
  EXPECT_EQ(std::vector<int64_t>(strides.begin(), strides.end()),
            (std::vector<int64_t>{256 * 384, 384, 1}));
  const Dims with_ones = ContiguousStrides(Shape{3, 1, 4, 1});
  EXPECT_EQ(std::vector<int64_t>(with_ones.begin(), with_ones.end()),
            (std::vector<int64_t>{4, 4, 1, 1}));
  const Dims with_zero = ContiguousStrides(Shape{2, 0, 5});
  EXPECT_EQ(std::vector<int64_t>(with_zero.begin(), with_zero.end()),
            (std::vector<int64_t>{0, 5, 1}));
  EXPECT_TRUE(ContiguousStrides(Shape()).empty());
  const Dims one = ContiguousStrides(Shape{7});
  EXPECT_EQ(std::vector<int64_t>(one.begin(), one.end()), (std::vector<int64_t>{1}));
  // The stride of each dimension is the product of the sizes after it.
  const Shape deep{2, 3, 1, 4, 5, 2, 3};
  const Dims s = ContiguousStrides(deep);
  for (int d = 0; d < deep.rank(); ++d) {
    int64_t product = 1;
    for (int k = d + 1; k < deep.rank(); ++k) product *= deep[k];
    EXPECT_EQ(s[d], product) << d;
  }
}

TEST(ShapeDeathTest, DimOutOfRangeAborts) {
  EXPECT_DEATH(Shape({2, 3}).dim(2), "dimension 2 out of range for shape \\[2, 3\\]");
  EXPECT_DEATH(Shape({2, 3}).dim(-3), "dimension -3 out of range");
  EXPECT_DEATH(Shape().dim(0), "out of range for shape \\[\\]");
}

TEST(ShapeDeathTest, ConstructorAbortsOnNegativeSizes) {
  // Internal code builds shapes it knows are valid; a negative size there is a broken invariant.
  EXPECT_DEATH(Shape({2, -1}), "negative size in shape");
}

}  // namespace
}  // namespace strata
