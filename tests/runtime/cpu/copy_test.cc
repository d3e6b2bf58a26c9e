#include "runtime/cpu/copy.h"

#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

Tensor Iota(const Shape& s, DType dtype = DType::kF32) {
  Vec v(s.numel());
  std::iota(v.begin(), v.end(), 0.0);
  return testing::FromDouble(v, s, dtype);
}

TEST(CopyTest, PermuteCopiesMatchIndexArithmeticForEveryDType) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kI64, DType::kU8}) {
    SCOPED_TRACE(DTypeName(dtype));
    const Shape s{3, 5, 7, 2};  // 210 elements: every value exact in u8 and bf16 up to 255/256
    const Tensor x = Iota(s, dtype == DType::kU8 ? DType::kF32 : dtype);
    const Tensor xd = dtype == DType::kU8 ? Tensor::Empty(s, dtype, DefaultCpuAllocator()).value() : x;
    if (dtype == DType::kU8) {
      ASSERT_TRUE(xd.CopyFrom(x).ok());
    }
    const int order[] = {2, 0, 3, 1};
    const Tensor view = xd.Permute(order).value();
    const Tensor dst = Tensor::Empty(view.shape(), dtype, DefaultCpuAllocator()).value();
    ASSERT_TRUE(CopyStrided(view, dst).ok());
    const Vec got = ToDouble(dst);
    int64_t k = 0;
    for (int64_t i2 = 0; i2 < 7; ++i2)
      for (int64_t i0 = 0; i0 < 3; ++i0)
        for (int64_t i3 = 0; i3 < 2; ++i3)
          for (int64_t i1 = 0; i1 < 5; ++i1, ++k)
            ASSERT_EQ(got[k], ((i0 * 5 + i1) * 7 + i2) * 2 + i3) << k;
  }
}

TEST(CopyTest, TiledTransposeOfLargeMatricesAndIntoStridedDestinations) {
  const Tensor x = Iota(Shape{2, 67, 45});
  const Tensor xt = testing::EmptyF32(Shape{2, 45, 67});
  ASSERT_TRUE(TransposeCopy(x, 1, 2, xt).ok());
  const Vec v = ToDouble(xt);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 45; ++i)
      for (int64_t j = 0; j < 67; ++j) ASSERT_EQ(v[(b * 45 + i) * 67 + j], (b * 67 + j) * 45 + i);
  // Transposing back is the gradient of the transpose: the round trip is the identity.
  const Tensor back = testing::MakeStrided(testing::EmptyF32(Shape{2, 67, 45}));
  ASSERT_TRUE(TransposeCopy(xt, 1, 2, back).ok());
  EXPECT_EQ(ToDouble(back), ToDouble(x));
}

TEST(CopyTest, ReshapeCopyFromStridedSource) {
  const Tensor x = Iota(Shape{4, 6});
  const Tensor xt = x.Transpose(0, 1).value();  // (6, 4), cannot be viewed as (24)
  const Tensor flat = testing::EmptyF32(Shape{3, 8});
  ASSERT_TRUE(ReshapeCopy(xt, flat).ok());
  EXPECT_EQ(ToDouble(flat), ToDouble(xt));
  ExpectStatus(ReshapeCopy(xt, testing::EmptyF32(Shape{5, 5})), absl::StatusCode::kInvalidArgument,
               {"element count"});
}

TEST(CopyTest, ConcatAndSplitMatchPyTorchAndRoundTrip) {
  const SafetensorsFile f = testing::LoadFixture("copy");
  auto get = [&](const char* k) { return f.Get(k).value(); };
  const Tensor y = testing::EmptyF32(get("cat.y").shape());
  const Tensor parts[] = {get("a"), get("b")};
  ASSERT_TRUE(Concat(parts, 1, y).ok());
  EXPECT_EQ(ToDouble(y), ToDouble(get("cat.y")));
  // The backward of concat is split of the gradient.
  const Tensor da = testing::EmptyF32(get("a").shape()), db = testing::EmptyF32(get("b").shape());
  const Tensor grads[] = {da, db};
  ASSERT_TRUE(Split(get("cat.dy"), -2, grads).ok());
  EXPECT_EQ(ToDouble(da), ToDouble(get("cat.da")));
  EXPECT_EQ(ToDouble(db), ToDouble(get("cat.db")));
  // Permute copy, and its backward as the inverse permute copy.
  const int order[] = {0, 2, 3, 1};
  const Tensor p = testing::EmptyF32(get("perm.y").shape());
  ASSERT_TRUE(CopyStrided(get("x").Permute(order).value(), p).ok());
  EXPECT_EQ(ToDouble(p), ToDouble(get("perm.y")));
  const int inverse[] = {0, 3, 1, 2};
  const Tensor dx = testing::EmptyF32(get("x").shape());
  ASSERT_TRUE(CopyStrided(get("perm.dy").Permute(inverse).value(), dx).ok());
  EXPECT_EQ(ToDouble(dx), ToDouble(get("perm.dx")));
}

TEST(CopyTest, BadInput) {
  const Tensor a = Iota(Shape{2, 3}), b = Iota(Shape{3, 3});
  const Tensor parts[] = {a, b};
  ExpectStatus(Concat(parts, 1, testing::EmptyF32(Shape{2, 6})), absl::StatusCode::kInvalidArgument,
               {"part 1", "[3, 3]", "outside dimension 1"});
  ExpectStatus(Concat(parts, 0, testing::EmptyF32(Shape{6, 3})), absl::StatusCode::kInvalidArgument,
               {"add up to 5", "has 6"});
  const Tensor mixed[] = {a, Iota(Shape{2, 3}, DType::kI64)};
  ExpectStatus(Concat(mixed, 0, testing::EmptyF32(Shape{4, 3})), absl::StatusCode::kInvalidArgument,
               {"part 1", "i64"});
  ExpectStatus(CopyStrided(a, testing::EmptyF32(Shape{3, 2})), absl::StatusCode::kInvalidArgument,
               {"dst", "[2, 3]"});
  ExpectStatus(Split(a, 2, parts), absl::StatusCode::kInvalidArgument, {"dimension 2"});
}

}  // namespace
}  // namespace strata::cpu
