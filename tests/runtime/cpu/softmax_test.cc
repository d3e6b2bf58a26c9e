#include "runtime/cpu/softmax.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

Vec Reference(const Vec& x, int64_t c) {
  Vec y(x.size());
  for (size_t r = 0; r < x.size() / c; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < c; ++i) m = std::max(m, x[r * c + i]);
    for (int64_t i = 0; i < c; ++i) s += std::exp(x[r * c + i] - m);
    for (int64_t i = 0; i < c; ++i) y[r * c + i] = std::exp(x[r * c + i] - m) / s;
  }
  return y;
}

TEST(SoftmaxTest, ForwardBackwardAgainstReference) {
  std::mt19937_64 rng(7);
  for (const Shape& s : {Shape{1, 1}, Shape{1, 5}, Shape{3, 17}, Shape{2, 3, 67}}) {
    SCOPED_TRACE(s.ToString());
    const int64_t c = s.dim(-1);
    const Tensor x = testing::RandomTensor(s, rng, -10.0f, 10.0f);
    const Vec xv = ToDouble(x);
    const Tensor y = testing::EmptyF32(s);
    ASSERT_TRUE(SoftmaxForward(x, y).ok());
    ExpectClose(y, Reference(xv, c), 1e-5, 1e-7, "forward");
    const Tensor dy = testing::RandomTensor(s, rng), dx = testing::EmptyF32(s);
    ASSERT_TRUE(SoftmaxBackward(y, dy, dx).ok());
    ExpectClose(dx, testing::NumericalGradient([&](const Vec& v) { return Reference(v, c); }, xv, ToDouble(dy)),
                1e-4, 1e-6, "backward");
  }
}

Vec LogReference(const Vec& x, int64_t c) {
  Vec y = Reference(x, c);
  for (double& v : y) v = std::log(v);
  return y;
}

TEST(SoftmaxTest, LogSoftmaxForwardBackwardAgainstReference) {
  std::mt19937_64 rng(8);
  for (const Shape& s : {Shape{1, 1}, Shape{1, 5}, Shape{3, 17}, Shape{2, 3, 67}}) {
    SCOPED_TRACE(s.ToString());
    const int64_t c = s.dim(-1);
    const Tensor x = testing::RandomTensor(s, rng, -10.0f, 10.0f);
    const Vec xv = ToDouble(x);
    const Tensor y = testing::EmptyF32(s);
    ASSERT_TRUE(LogSoftmaxForward(x, y).ok());
    ExpectClose(y, LogReference(xv, c), 1e-5, 1e-6, "forward");
    const Tensor dy = testing::RandomTensor(s, rng), dx = testing::EmptyF32(s);
    ASSERT_TRUE(LogSoftmaxBackward(y, dy, dx).ok());
    ExpectClose(dx, testing::NumericalGradient([&](const Vec& v) { return LogReference(v, c); }, xv, ToDouble(dy)),
                1e-4, 1e-6, "backward");
  }
  // Far tails keep their digits: log(softmax) of a logit 200 below the rest is -200, not -inf.
  const Tensor x = testing::FromDouble({0, -200, 3}, Shape{1, 3});
  const Tensor y = testing::EmptyF32(Shape{1, 3});
  ASSERT_TRUE(LogSoftmaxForward(x, y).ok());
  ExpectClose(y, LogReference({0, -200, 3}, 3), 1e-6, 1e-6, "tail");
}

TEST(SoftmaxTest, StableForHugeLogitsAndInPlace) {
  const Tensor x = testing::FromDouble({1000, 1001, 999, -1e30}, Shape{1, 4});
  ASSERT_TRUE(SoftmaxForward(x, x).ok());
  ExpectClose(x, Reference({1000, 1001, 999, -1e30}, 4), 1e-5, 1e-7, "in place, large logits");
}

// -inf entries (masks) get exactly 0 and a row of nothing but -inf gives NaN, as PyTorch's: on
// every path, the vectorized one included (33 columns: two full 16-lane blocks and a tail).
TEST(SoftmaxTest, MinusInfinityGivesZeroAndAnAllMinusInfinityRowNaN) {
  const double inf = INFINITY;
  Vec values(2 * 33, -inf);
  for (int i = 0; i < 33; i += 3) values[i] = 0.1 * i;  // row 0: every third entry finite
  const Tensor x = testing::FromDouble(values, Shape{2, 33});
  const Tensor y = testing::EmptyF32(x.shape());
  ASSERT_TRUE(SoftmaxForward(x, y).ok());
  const Vec got = ToDouble(y);
  double sum = 0;
  for (int i = 0; i < 33; ++i) {
    if (i % 3 != 0) {
      EXPECT_EQ(got[i], 0.0) << "column " << i;
    }
    sum += got[i];
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
  for (int i = 33; i < 66; ++i) EXPECT_TRUE(std::isnan(got[i])) << "column " << i - 33 << ": " << got[i];
}

TEST(SoftmaxTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("softmax");
  const Tensor x = f.Get("x").value();
  const Tensor y = testing::EmptyF32(x.shape()), dx = testing::EmptyF32(x.shape());
  ASSERT_TRUE(SoftmaxForward(x, y).ok());
  ExpectClose(y, ToDouble(f.Get("y").value()), 1e-5, 1e-7, "y");
  ASSERT_TRUE(SoftmaxBackward(y, f.Get("dy").value(), dx).ok());
  ExpectClose(dx, ToDouble(f.Get("dx").value()), 1e-5, 1e-7, "dx");
  ASSERT_TRUE(LogSoftmaxForward(x, y).ok());
  ExpectClose(y, ToDouble(f.Get("log.y").value()), 1e-5, 1e-6, "log y");
  ASSERT_TRUE(LogSoftmaxBackward(y, f.Get("log.dy").value(), dx).ok());
  ExpectClose(dx, ToDouble(f.Get("log.dx").value()), 1e-5, 1e-6, "log dx");
}

TEST(SoftmaxTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{3, 4}, rng);
  ExpectStatus(SoftmaxForward(testing::MakeStrided(x), testing::EmptyF32(Shape{3, 4})),
               absl::StatusCode::kInvalidArgument, {"SoftmaxForward", "not contiguous"});
  ExpectStatus(SoftmaxForward(x, testing::EmptyF32(Shape{3, 5})),
               absl::StatusCode::kInvalidArgument, {"out", "[3, 5]"});
}

}  // namespace
}  // namespace strata::cpu
