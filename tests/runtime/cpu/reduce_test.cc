#include "runtime/cpu/reduce.h"

#include <cmath>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

// x viewed as (outer, n, inner) around `dim`.
struct View {
  int64_t outer = 1, n = 1, inner = 1;
};
View Around(const Shape& s, int dim) {
  View v;
  for (int i = 0; i < s.rank(); ++i) (i < dim ? v.outer : i == dim ? v.n : v.inner) *= s.dim(i);
  return v;
}
Shape Without(const Shape& s, int dim) {
  std::vector<int64_t> d;
  for (int i = 0; i < s.rank(); ++i) {
    if (i != dim) d.push_back(s.dim(i));
  }
  return Shape(d);
}

Vec SumRef(const Vec& x, const View& v) {
  Vec y(v.outer * v.inner, 0.0);
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t k = 0; k < v.n; ++k)
      for (int64_t i = 0; i < v.inner; ++i) y[o * v.inner + i] += x[(o * v.n + k) * v.inner + i];
  return y;
}

Vec MaxRef(const Vec& x, const View& v) {
  Vec y(v.outer * v.inner, -INFINITY);
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t k = 0; k < v.n; ++k)
      for (int64_t i = 0; i < v.inner; ++i)
        y[o * v.inner + i] = std::max(y[o * v.inner + i], x[(o * v.n + k) * v.inner + i]);
  return y;
}

TEST(ReduceTest, SumMaxAndTheirGradientsAgainstReference) {
  std::mt19937_64 rng(3);
  for (const Shape& s : {Shape{1}, Shape{7}, Shape{4, 9}, Shape{3, 5, 11}, Shape{2, 3, 4, 5}}) {
    for (int dim = 0; dim < s.rank(); ++dim) {
      SCOPED_TRACE(absl::StrCat(s.ToString(), " dim ", dim));
      const View v = Around(s, dim);
      const Shape r = Without(s, dim);
      const Tensor x = testing::RandomTensor(s, rng);
      const Vec xv = ToDouble(x);
      const Tensor y = testing::EmptyF32(r), dy = testing::RandomTensor(r, rng);
      const Tensor dx = testing::EmptyF32(s);
      ASSERT_TRUE(SumDim(x, dim, y).ok());
      ExpectClose(y, SumRef(xv, v), 1e-6, 1e-6, "sum");
      ASSERT_TRUE(BroadcastDim(dy, dim, dx).ok());  // the gradient of the sum
      ExpectClose(dx, testing::NumericalGradient([&](const Vec& z) { return SumRef(z, v); }, xv,
                                                 ToDouble(dy)),
                  1e-5, 1e-6, "sum backward");
      ASSERT_TRUE(MaxDim(x, dim - s.rank(), y).ok());  // the same dim, counted from the back
      ExpectClose(y, MaxRef(xv, v), 0.0 + 1e-7, 1e-7, "max");
      ASSERT_TRUE(MaxDimBackward(x, y, dy, dim, dx).ok());
      ExpectClose(dx, testing::NumericalGradient([&](const Vec& z) { return MaxRef(z, v); }, xv,
                                                 ToDouble(dy)),
                  1e-5, 1e-6, "max backward");
    }
  }
}

TEST(ReduceTest, MatchesPyTorchTiesAndAll) {
  const SafetensorsFile f = testing::LoadFixture("reduce");
  const Tensor x = f.Get("x").value();
  for (int dim = 0; dim < 3; ++dim) {
    SCOPED_TRACE(dim);
    const std::string d = std::to_string(dim);
    const Tensor ys = f.Get("sum" + d + ".y").value();
    const Tensor y = testing::EmptyF32(ys.shape()), dx = testing::EmptyF32(x.shape());
    ASSERT_TRUE(SumDim(x, dim, y).ok());
    ExpectClose(y, ToDouble(ys), 1e-5, 1e-6, "sum");
    ASSERT_TRUE(BroadcastDim(f.Get("sum" + d + ".dy").value(), dim, dx).ok());
    ExpectClose(dx, ToDouble(f.Get("sum" + d + ".dx").value()), 1e-6, 1e-7, "sum dx");
    ASSERT_TRUE(MaxDim(x, dim, y).ok());
    ExpectClose(y, ToDouble(f.Get("max" + d + ".y").value()), 1e-6, 1e-7, "max");
    ASSERT_TRUE(MaxDimBackward(x, y, f.Get("max" + d + ".dy").value(), dim, dx).ok());
    ExpectClose(dx, ToDouble(f.Get("max" + d + ".dx").value()), 1e-6, 1e-7, "max dx");
  }
}

TEST(ReduceTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{3, 4}, rng);
  ExpectStatus(SumDim(x, 2, testing::EmptyF32(Shape{3})), absl::StatusCode::kInvalidArgument,
               {"SumDim", "dim 2", "out of range", "f32[3, 4]"});
  ExpectStatus(SumDim(x, 0, testing::EmptyF32(Shape{3})), absl::StatusCode::kInvalidArgument,
               {"SumDim", "out", "f32[3]", "expected [4]"});
  ExpectStatus(MaxDim(testing::MakeStrided(x), 1, testing::EmptyF32(Shape{3})),
               absl::StatusCode::kInvalidArgument, {"not contiguous"});
  ExpectStatus(MaxDim(testing::EmptyF32(Shape{3, 0}), 1, testing::EmptyF32(Shape{3})),
               absl::StatusCode::kInvalidArgument, {"MaxDim", "no elements along dim 1"});
}

}  // namespace
}  // namespace strata::cpu
