#include "runtime/cpu/pooling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

// Double-precision pooling from the definition; max windows skip padding, avg counts it as 0.
Vec ReferencePool(const Vec& x, const Shape& s, const Pool2dParams& p, bool max) {
  const Shape y = Pool2dOutputShape(s, p).value();
  Vec out(y.numel());
  for (int64_t pl = 0; pl < s[0] * s[1]; ++pl)
    for (int64_t oy = 0; oy < y[2]; ++oy)
      for (int64_t ox = 0; ox < y[3]; ++ox) {
        double acc = max ? -std::numeric_limits<double>::infinity() : 0.0;
        for (int ki = 0; ki < p.kernel_h; ++ki)
          for (int kj = 0; kj < p.kernel_w; ++kj) {
            const int64_t iy = oy * p.stride_h - p.pad_h + ki, ix = ox * p.stride_w - p.pad_w + kj;
            if (iy < 0 || iy >= s[2] || ix < 0 || ix >= s[3]) continue;
            const double v = x[(pl * s[2] + iy) * s[3] + ix];
            acc = max ? std::max(acc, v) : acc + v;
          }
        out[(pl * y[2] + oy) * y[3] + ox] = max ? acc : acc / (p.kernel_h * p.kernel_w);
      }
  return out;
}

TEST(PoolingTest, MaxAndAvgMatchReferenceAndFiniteDifferences) {
  std::mt19937_64 rng(6);
  const Pool2dParams params[] = {
      {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2},
      {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1},
      {.kernel_h = 3, .kernel_w = 2, .stride_h = 1, .stride_w = 2, .pad_h = 1}};
  for (const Shape& s : {Shape{1, 1, 5, 5}, Shape{2, 3, 7, 9}}) {
    for (const Pool2dParams& p : params) {
      SCOPED_TRACE(s.ToString() + " kernel " + std::to_string(p.kernel_h));
      // Distinct values so the max is unique and finite differences are well defined.
      const Tensor x = testing::RandomTensor(s, rng);
      const Vec xv = ToDouble(x);
      const Shape ys = Pool2dOutputShape(s, p).value();
      const Tensor dy = testing::RandomTensor(ys, rng);
      for (bool max : {true, false}) {
        const Tensor y = testing::EmptyF32(ys), dx = testing::EmptyF32(s);
        if (max) {
          ASSERT_TRUE(MaxPool2dForward(x, y, p).ok());
          ASSERT_TRUE(MaxPool2dBackward(x, dy, dx, p).ok());
        } else {
          ASSERT_TRUE(AvgPool2dForward(x, y, p).ok());
          ASSERT_TRUE(AvgPool2dBackward(dy, dx, p).ok());
        }
        ExpectClose(y, ReferencePool(xv, s, p, max), 1e-6, 1e-6, max ? "max forward" : "avg forward");
        ExpectClose(dx, testing::NumericalGradient([&](const Vec& v) { return ReferencePool(v, s, p, max); },
                                                   xv, ToDouble(dy), 1e-7),
                    1e-4, 1e-5, max ? "max backward" : "avg backward");
      }
    }
  }
}

TEST(PoolingTest, GlobalAverage) {
  std::mt19937_64 rng(8);
  const Tensor x = testing::RandomTensor(Shape{2, 3, 5, 7}, rng);
  const Tensor y = testing::EmptyF32(Shape{2, 3});
  ASSERT_TRUE(GlobalAvgPoolForward(x, y).ok());
  const Vec xv = ToDouble(x);
  auto ref = [](const Vec& v) {
    Vec out(6, 0.0);
    for (size_t i = 0; i < v.size(); ++i) out[i / 35] += v[i] / 35;
    return out;
  };
  ExpectClose(y, ref(xv), 1e-6, 1e-7, "forward");
  const Tensor dy = testing::RandomTensor(Shape{2, 3}, rng), dx = testing::EmptyF32(x.shape());
  ASSERT_TRUE(GlobalAvgPoolBackward(dy, dx).ok());
  ExpectClose(dx, testing::NumericalGradient(ref, xv, ToDouble(dy)), 1e-5, 1e-7, "backward");
}

TEST(PoolingTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("pooling");
  const Tensor x = f.Get("x").value();
  const std::pair<std::string, Pool2dParams> cases[] = {
      {"k2s2", {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2}},
      {"k3s2p1", {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}},
      {"k3x2s1", {.kernel_h = 3, .kernel_w = 2, .stride_h = 1, .stride_w = 2, .pad_h = 1}}};
  for (const auto& [name, p] : cases) {
    for (const std::string kind : {"max", "avg"}) {
      SCOPED_TRACE(kind + "_" + name);
      auto get = [&](const char* k) { return f.Get(kind + "_" + name + "." + k).value(); };
      const Tensor y = testing::EmptyF32(get("y").shape()), dx = testing::EmptyF32(x.shape());
      if (kind == "max") {
        ASSERT_TRUE(MaxPool2dForward(x, y, p).ok());
        ASSERT_TRUE(MaxPool2dBackward(x, get("dy"), dx, p).ok());
      } else {
        ASSERT_TRUE(AvgPool2dForward(x, y, p).ok());
        ASSERT_TRUE(AvgPool2dBackward(get("dy"), dx, p).ok());
      }
      ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-6, "y");
      ExpectClose(dx, ToDouble(get("dx")), 1e-5, 1e-6, "dx");
    }
  }
  const Tensor y = testing::EmptyF32(Shape{2, 3}), dx = testing::EmptyF32(x.shape());
  ASSERT_TRUE(GlobalAvgPoolForward(x, y).ok());
  ASSERT_TRUE(GlobalAvgPoolBackward(f.Get("global.dy").value(), dx).ok());
  ExpectClose(y, ToDouble(f.Get("global.y").value()), 1e-5, 1e-6, "global y");
  ExpectClose(dx, ToDouble(f.Get("global.dx").value()), 1e-5, 1e-6, "global dx");
}

TEST(PoolingTest, NaNPropagatesThroughMax) {
  const Tensor x = testing::FromDouble({1, std::nan(""), 3, 4}, Shape{1, 1, 2, 2});
  const Tensor y = testing::EmptyF32(Shape{1, 1, 1, 1});
  ASSERT_TRUE(MaxPool2dForward(x, y, {}).ok());
  EXPECT_TRUE(std::isnan(y.data<float>()[0]));
}

TEST(PoolingTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{1, 2, 3, 3}, rng);
  ExpectStatus(Pool2dOutputShape(x.shape(), {.kernel_h = 4, .kernel_w = 2}).status(),
               absl::StatusCode::kInvalidArgument, {"kernel 4x2", "padded input 3x3"});
  ExpectStatus(Pool2dOutputShape(x.shape(), {.kernel_h = 2, .kernel_w = 2, .pad_h = 2}).status(),
               absl::StatusCode::kInvalidArgument, {"pad_h = 2"});
  ExpectStatus(Pool2dOutputShape(x.shape(), {.stride_h = 0}).status(),
               absl::StatusCode::kInvalidArgument, {"stride_h = 0"});
  ExpectStatus(MaxPool2dForward(x, testing::EmptyF32(Shape{1, 2, 2, 2}), {}),
               absl::StatusCode::kInvalidArgument, {"y", "[1, 2, 1, 1]"});
  ExpectStatus(GlobalAvgPoolForward(x, testing::EmptyF32(Shape{2, 1})),
               absl::StatusCode::kInvalidArgument, {"y", "[1, 2]"});
}

}  // namespace
}  // namespace strata::cpu
