#include "runtime/cpu/rmsnorm.h"

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

Vec Reference(const Vec& x, const Vec& g, int64_t c, double eps) {
  Vec y(x.size());
  for (size_t r = 0; r < x.size() / c; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < c; ++i) ms += x[r * c + i] * x[r * c + i] / c;
    for (int64_t i = 0; i < c; ++i) y[r * c + i] = x[r * c + i] / std::sqrt(ms + eps) * g[i];
  }
  return y;
}

// The gradients in closed form, in double: dx = r (g dy - x r^2 mean(g dy x)), dg = sum dy x r.
void ReferenceBackward(const Vec& x, const Vec& g, const Vec& dy, int64_t c, double eps, Vec& dx,
                       Vec& dg) {
  dx.assign(x.size(), 0.0);
  dg.assign(c, 0.0);
  for (size_t row = 0; row < x.size() / c; ++row) {
    const double* xr = x.data() + row * c;
    const double* dr = dy.data() + row * c;
    double ms = 0, gdx = 0;
    for (int64_t i = 0; i < c; ++i) ms += xr[i] * xr[i] / c;
    const double r = 1 / std::sqrt(ms + eps);
    for (int64_t i = 0; i < c; ++i) gdx += g[i] * dr[i] * xr[i] / c;
    for (int64_t i = 0; i < c; ++i) {
      dx[row * c + i] = r * (g[i] * dr[i] - xr[i] * r * r * gdx);
      dg[i] += dr[i] * xr[i] * r;
    }
  }
}

TEST(RmsNormTest, ForwardBackwardAgainstReference) {
  std::mt19937_64 rng(41);
  // The last two run on several threads: uneven row ranges, and rows wider than the one-pass
  // limit of 4096.
  for (const Shape& s : {Shape{1, 1}, Shape{1, 7}, Shape{5, 31}, Shape{2, 3, 130}, Shape{33, 520},
                         Shape{4, 4099}}) {
    SCOPED_TRACE(s.ToString());
    const int64_t c = s.dim(-1), rows = s.numel() / c;
    const Tensor x = testing::RandomTensor(s, rng, -2.0f, 3.0f);
    const Tensor g = testing::RandomTensor(Shape{c}, rng);
    const Vec xv = ToDouble(x), gv = ToDouble(g);
    const Tensor y = testing::EmptyF32(s), rstd = testing::EmptyF32(Shape{rows});
    ASSERT_TRUE(RmsNormForward(x, g, 1e-6f, y, rstd).ok());
    ExpectClose(y, Reference(xv, gv, c, 1e-6), 1e-4, 1e-5, "forward");
    const Tensor dy = testing::RandomTensor(s, rng);
    const Vec dyv = ToDouble(dy);
    const Tensor dx = testing::EmptyF32(s), dg = testing::EmptyF32(Shape{c});
    ASSERT_TRUE(RmsNormBackward(x, g, rstd, dy, dx, dg).ok());
    Vec want_dx, gg;
    ReferenceBackward(xv, gv, dyv, c, 1e-6, want_dx, gg);
    ExpectClose(dx, want_dx, 1e-4, 1e-5, "dx");
    ExpectClose(dg, gg, 1e-4, 1e-5, "dgamma");
    if (s.numel() < 1000) {  // the closed form against finite differences (quadratic in size)
      ExpectClose(dx, testing::NumericalGradient([&](const Vec& v) { return Reference(v, gv, c, 1e-6); }, xv, dyv),
                  1e-3, 1e-4, "dx by finite differences");
      ExpectClose(dg, testing::NumericalGradient([&](const Vec& v) { return Reference(xv, v, c, 1e-6); }, gv, dyv),
                  1e-4, 1e-5, "dgamma by finite differences");
    }
    // Accumulate dgamma; dx written over dy.
    ASSERT_TRUE(RmsNormBackward(x, g, rstd, dy, dy, dg, GradMode::kAccumulate).ok());
    Vec gg2 = gg;
    for (double& v : gg2) v *= 2;
    ExpectClose(dg, gg2, 1e-4, 1e-5, "accumulated dgamma");
    ExpectClose(dy, ToDouble(dx), 1e-6, 1e-7, "dx written over dy");
  }
}

TEST(RmsNormTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("rmsnorm");
  auto get = [&](const char* k) { return f.Get(k).value(); };
  const Tensor x = get("x");
  const Tensor y = testing::EmptyF32(x.shape()), rstd = testing::EmptyF32(Shape{2, 7});
  ASSERT_TRUE(RmsNormForward(x, get("w"), 1e-5f, y, rstd).ok());
  ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-6, "y");
  const Tensor dx = testing::EmptyF32(x.shape()), dw = testing::EmptyF32(Shape{37});
  ASSERT_TRUE(RmsNormBackward(x, get("w"), rstd, get("dy"), dx, dw).ok());
  ExpectClose(dx, ToDouble(get("dx")), 1e-5, 1e-5, "dx");
  ExpectClose(dw, ToDouble(get("dw")), 1e-5, 1e-5, "dw");
}

TEST(RmsNormTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{3, 4}, rng);
  const Tensor g = testing::RandomTensor(Shape{4}, rng);
  const Tensor s3 = testing::EmptyF32(Shape{3});
  ExpectStatus(RmsNormForward(x, testing::RandomTensor(Shape{5}, rng), 1e-5f, testing::EmptyF32(Shape{3, 4}), s3),
               absl::StatusCode::kInvalidArgument, {"RmsNormForward", "gamma", "f32[5]", "[4]"});
  ExpectStatus(RmsNormForward(x, g, 1e-5f, testing::EmptyF32(Shape{3, 4}), testing::EmptyF32(Shape{4})),
               absl::StatusCode::kInvalidArgument, {"rstd", "3 elements"});
  ExpectStatus(RmsNormForward(x, g, 0.0f, testing::EmptyF32(Shape{3, 4}), s3),
               absl::StatusCode::kInvalidArgument, {"eps = 0"});
  ExpectStatus(RmsNormBackward(x, g, s3, testing::RandomTensor(Shape{4, 3}, rng), Tensor(), Tensor()),
               absl::StatusCode::kInvalidArgument, {"RmsNormBackward", "dy"});
}

}  // namespace
}  // namespace strata::cpu
