#include "runtime/tensor.h"

#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

// 0, 1, 2, ... in a contiguous f32 tensor.
Tensor Iota(const Shape& shape) {
  Tensor t = Tensor::Empty(shape, DType::kF32, DefaultCpuAllocator()).value();
  std::iota(t.data<float>(), t.data<float>() + t.numel(), 0.0f);
  return t;
}

TEST(TensorTest, SliceSelectTransposeAreViewsWithTheRightElements) {
  const Tensor x = Iota(Shape{4, 5, 6});
  const Tensor s = x.Slice(1, 1, 5, 2).value();  // rows 1 and 3
  EXPECT_EQ(s.shape(), Shape({4, 2, 6}));
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.storage(), x.storage());
  const Vec v = ToDouble(s);
  // Element (i, j, k) of the view is element (i, 1 + 2j, k) of x, whose value is its index.
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 6; ++k) EXPECT_EQ(v[(i * 2 + j) * 6 + k], i * 30 + (1 + 2 * j) * 6 + k);
  const Tensor sel = x.Select(2, 3).value();
  EXPECT_EQ(sel.shape(), Shape({4, 5}));
  EXPECT_EQ(ToDouble(sel)[7], 1 * 30 + 2 * 6 + 3);
  const Tensor t = x.Transpose(0, 2).value();
  EXPECT_EQ(t.shape(), Shape({6, 5, 4}));
  EXPECT_EQ(ToDouble(t)[(2 * 5 + 3) * 4 + 1], 1 * 30 + 3 * 6 + 2);
  const int order[] = {2, 0, 1};
  const Tensor p = x.Permute(order).value();
  EXPECT_EQ(p.shape(), Shape({6, 4, 5}));
  EXPECT_EQ(ToDouble(p)[(5 * 4 + 2) * 5 + 4], 2 * 30 + 4 * 6 + 5);
}

TEST(TensorTest, ReshapeViewsWhenStridesAllowAndFailsWhenACopyIsNeeded) {
  const Tensor x = Iota(Shape{4, 6});
  const Tensor r = x.Reshape({2, -1, 3}).value();
  EXPECT_EQ(r.shape(), Shape({2, 4, 3}));
  EXPECT_EQ(r.storage(), x.storage());
  // Slicing whole rows keeps the rows contiguous with each other: still a view.
  const Tensor rows = x.Slice(0, 1, 3).value();
  EXPECT_EQ(ToDouble(rows.Reshape({12}).value()), ToDouble(rows.Contiguous(DefaultCpuAllocator()).value()));
  // A transposed matrix can split its outer dimension without a copy ...
  const Tensor t = x.Transpose(0, 1).value();  // (6, 4), strides (1, 6)
  const Tensor split = t.Reshape({2, 3, 4}).value();
  EXPECT_EQ(ToDouble(split), ToDouble(t));
  // ... but cannot be flattened.
  ExpectStatus(t.Reshape({24}).status(), absl::StatusCode::kFailedPrecondition,
               {"needs a copy", "Contiguous"});
  ExpectStatus(x.Reshape({5, -1}).status(), absl::StatusCode::kInvalidArgument, {"-1"});
  ExpectStatus(x.Reshape({5, 5}).status(), absl::StatusCode::kInvalidArgument,
               {"24 elements", "25 elements"});
  ExpectStatus(x.Reshape({-2, 12}).status(), absl::StatusCode::kInvalidArgument,
               {"invalid size -2"});
}

TEST(TensorTest, ViewErrorsNameTheProblem) {
  const Tensor x = Iota(Shape{3, 4});
  ExpectStatus(x.Slice(1, 2, 5).status(), absl::StatusCode::kOutOfRange, {"[2, 5)", "size 4"});
  ExpectStatus(x.Slice(3, 0, 1).status(), absl::StatusCode::kInvalidArgument, {"dimension 3"});
  ExpectStatus(x.Slice(0, 0, 1, 0).status(), absl::StatusCode::kInvalidArgument, {"step 0"});
  const int dup[] = {0, 0};
  ExpectStatus(x.Permute(dup).status(), absl::StatusCode::kInvalidArgument,
               {"not a permutation"});
  const int64_t strides[] = {4, 1};
  ExpectStatus(Tensor::View(x.storage(), Shape{4, 4}, strides, 0, DType::kF32).status(),
               absl::StatusCode::kOutOfRange, {"storage of 12"});
}

TEST(TensorTest, CopyFromConvertsDTypesAcrossStrides) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{5, 7, 3}, rng);
  const Tensor xt = x.Transpose(0, 2).value();
  Tensor bf = Tensor::Empty(xt.shape(), DType::kBF16, DefaultCpuAllocator()).value();
  ASSERT_TRUE(bf.CopyFrom(xt).ok());
  const Vec expect = ToDouble(xt);
  const Vec got = ToDouble(bf);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], Bf16ToFloat(FloatToBf16(static_cast<float>(expect[i])))) << i;
  }
  const Tensor strided = testing::MakeStrided(x);
  EXPECT_FALSE(strided.is_contiguous());
  EXPECT_EQ(ToDouble(strided), ToDouble(x));
  Tensor wrong = Tensor::Empty(Shape{3, 7, 5, 1}, DType::kF32, DefaultCpuAllocator()).value();
  ExpectStatus(wrong.CopyFrom(xt), absl::StatusCode::kInvalidArgument, {"differ in shape"});
}

TEST(TensorTest, FillZerosWrapAndCheckHelpers) {
  const Tensor z = Tensor::Zeros(Shape{2, 3}, DType::kI64, DefaultCpuAllocator()).value();
  EXPECT_EQ(ToDouble(z), Vec(6, 0.0));
  ASSERT_TRUE(z.Slice(1, 1, 3).value().Fill(7).ok());
  EXPECT_EQ(ToDouble(z), (Vec{0, 7, 7, 0, 7, 7}));
  float buf[4] = {1, 2, 3, 4};
  const Tensor w = Tensor::Wrap(buf, Shape{2, 2}, DType::kF32, Device::Cpu());
  EXPECT_FALSE(w.storage()->owned());
  EXPECT_EQ(w.data<float>(), buf);
  ExpectStatus(CheckDType("LayerNormForward", "gamma", w, DType::kBF16),
               absl::StatusCode::kInvalidArgument, {"LayerNormForward", "gamma", "f32[2, 2]", "bf16"});
  ExpectStatus(CheckShape("Op", "x", w, Shape{2, 3}), absl::StatusCode::kInvalidArgument,
               {"[2, 3]"});
  ExpectStatus(CheckContiguous("Op", "x", w.Transpose(0, 1).value()),
               absl::StatusCode::kInvalidArgument, {"not contiguous"});
  ExpectStatus(CheckDefined("Op", "bias", Tensor()), absl::StatusCode::kInvalidArgument,
               {"bias", "undefined"});
  const Tensor gpu = Tensor::Wrap(nullptr, Shape{2}, DType::kF32, Device::Cuda(0));
  ExpectStatus(CheckHostAddressable("Op", "x", gpu), absl::StatusCode::kInvalidArgument,
               {"cuda:0"});
}

TEST(TensorDeathTest, ReadingWithTheWrongTypeAborts) {
  const Tensor x = Iota(Shape{2});
  EXPECT_DEATH(x.data<int32_t>(), "read as i32");
}

TEST(TensorTest, NegativeShapesAndBudgetsAreStatusErrors) {
  const int64_t dims[] = {2, -1};
  ExpectStatus(Shape::Create(dims).status(), absl::StatusCode::kInvalidArgument, {"-1"});
}

}  // namespace
}  // namespace strata
