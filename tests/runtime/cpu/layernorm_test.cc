#include "runtime/cpu/layernorm.h"

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

Vec Reference(const Vec& x, const Vec& g, const Vec& b, int64_t c) {
  Vec y(x.size());
  for (size_t r = 0; r < x.size() / c; ++r) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < c; ++i) m += x[r * c + i] / c;
    for (int64_t i = 0; i < c; ++i) v += (x[r * c + i] - m) * (x[r * c + i] - m) / c;
    for (int64_t i = 0; i < c; ++i) y[r * c + i] = (x[r * c + i] - m) / std::sqrt(v + 1e-5) * g[i] + b[i];
  }
  return y;
}

TEST(LayerNormTest, ForwardBackwardAgainstReference) {
  std::mt19937_64 rng(9);
  // The last two are large enough to run on several threads: 33 rows split into uneven ranges,
  // and rows wider than the one-pass limit of 4096.
  for (const Shape& s : {Shape{1, 2}, Shape{1, 7}, Shape{5, 31}, Shape{2, 3, 130}, Shape{33, 520},
                         Shape{4, 4099}}) {
    SCOPED_TRACE(s.ToString());
    const int64_t c = s.dim(-1), rows = s.numel() / c;
    const Tensor x = testing::RandomTensor(s, rng, -2.0f, 3.0f);
    const Tensor g = testing::RandomTensor(Shape{c}, rng), b = testing::RandomTensor(Shape{c}, rng);
    const Vec xv = ToDouble(x), gv = ToDouble(g), bv = ToDouble(b);
    const Tensor y = testing::EmptyF32(s), mean = testing::EmptyF32(Shape{rows}),
                 rstd = testing::EmptyF32(Shape{rows});
    ASSERT_TRUE(LayerNormForward(x, g, b, 1e-5f, y, mean, rstd).ok());
    ExpectClose(y, Reference(xv, gv, bv, c), 1e-4, 1e-5, "forward");
    const Tensor dy = testing::RandomTensor(s, rng);
    const Vec dyv = ToDouble(dy);
    const Tensor dx = testing::EmptyF32(s), dg = testing::EmptyF32(Shape{c}), db = testing::EmptyF32(Shape{c});
    ASSERT_TRUE(LayerNormBackward(x, g, mean, rstd, dy, dx, dg, db).ok());
    ExpectClose(dx, testing::NumericalGradient([&](const Vec& v) { return Reference(v, gv, bv, c); }, xv, dyv),
                1e-3, 1e-4, "dx");
    const Vec gg = testing::NumericalGradient([&](const Vec& v) { return Reference(xv, v, bv, c); }, gv, dyv);
    ExpectClose(dg, gg, 1e-4, 1e-5, "dgamma");
    ExpectClose(db, testing::NumericalGradient([&](const Vec& v) { return Reference(xv, gv, v, c); }, bv, dyv),
                1e-4, 1e-5, "dbeta");
    // With a residual gradient r: dx + r, written over r itself.
    const Tensor r = testing::RandomTensor(s, rng);
    Vec want = ToDouble(r);
    for (size_t i = 0; i < want.size(); ++i) want[i] += static_cast<double>(dx.data<float>()[i]);
    ASSERT_TRUE(LayerNormBackward(x, g, mean, rstd, dy, r, Tensor(), Tensor(), GradMode::kOverwrite, r).ok());
    ExpectClose(r, want, 1e-5, 1e-6, "dx + residual");
    // Accumulate only dgamma; dx computed in place over dy.
    ASSERT_TRUE(LayerNormBackward(x, g, mean, rstd, dy, dy, dg, Tensor(), GradMode::kAccumulate).ok());
    Vec gg2 = gg;
    for (double& v : gg2) v *= 2;
    ExpectClose(dg, gg2, 1e-4, 1e-5, "accumulated dgamma");
    ExpectClose(dy, ToDouble(dx), 1e-6, 1e-7, "dx written over dy");
  }
}

TEST(LayerNormTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("layernorm");
  auto get = [&](const char* k) { return f.Get(k).value(); };
  const Tensor x = get("x");
  const Tensor y = testing::EmptyF32(x.shape()), mean = testing::EmptyF32(Shape{14}),
               rstd = testing::EmptyF32(Shape{2, 7});
  ASSERT_TRUE(LayerNormForward(x, get("w"), get("b"), 1e-5f, y, mean, rstd).ok());
  ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-6, "y");
  const Tensor dx = testing::EmptyF32(x.shape()), dw = testing::EmptyF32(Shape{37}), db = testing::EmptyF32(Shape{37});
  ASSERT_TRUE(LayerNormBackward(x, get("w"), mean, rstd, get("dy"), dx, dw, db).ok());
  ExpectClose(dx, ToDouble(get("dx")), 1e-5, 1e-5, "dx");
  ExpectClose(dw, ToDouble(get("dw")), 1e-5, 1e-5, "dw");
  ExpectClose(db, ToDouble(get("db")), 1e-5, 1e-5, "db");
}

TEST(LayerNormTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{3, 4}, rng);
  const Tensor g = testing::RandomTensor(Shape{4}, rng);
  const Tensor s3 = testing::EmptyF32(Shape{3});
  ExpectStatus(LayerNormForward(x, testing::RandomTensor(Shape{5}, rng), g, 1e-5f,
                                testing::EmptyF32(Shape{3, 4}), s3, s3),
               absl::StatusCode::kInvalidArgument, {"LayerNormForward", "gamma", "f32[5]", "[4]"});
  ExpectStatus(LayerNormForward(x, g, g, 1e-5f, testing::EmptyF32(Shape{3, 4}), testing::EmptyF32(Shape{4}), s3),
               absl::StatusCode::kInvalidArgument, {"mean", "3 elements"});
  ExpectStatus(LayerNormForward(x, g, g, -1.0f, testing::EmptyF32(Shape{3, 4}), s3, s3),
               absl::StatusCode::kInvalidArgument, {"eps = -1"});
  ExpectStatus(LayerNormForward(testing::MakeStrided(x), g, g, 1e-5f, testing::EmptyF32(Shape{3, 4}), s3, s3),
               absl::StatusCode::kInvalidArgument, {"x", "not contiguous"});
  const Tensor dy = testing::RandomTensor(Shape{3, 4}, rng), dx = testing::EmptyF32(Shape{3, 4});
  ExpectStatus(LayerNormBackward(x, g, s3, s3, dy, dx, Tensor(), Tensor(), GradMode::kOverwrite,
                                 testing::EmptyF32(Shape{4, 3})),
               absl::StatusCode::kInvalidArgument, {"LayerNormBackward", "residual", "[4, 3]"});
  ExpectStatus(LayerNormBackward(x, g, s3, s3, dy, Tensor(), Tensor(), Tensor(), GradMode::kOverwrite, dy),
               absl::StatusCode::kInvalidArgument, {"residual is given but dx is not"});
}

}  // namespace
}  // namespace strata::cpu
