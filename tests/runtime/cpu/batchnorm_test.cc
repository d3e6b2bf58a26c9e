#include "runtime/cpu/batchnorm.h"

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

constexpr double kEps = 1e-5;

Vec Reference(const Vec& x, const Vec& g, const Vec& b, const Vec& m, const Vec& v,
              const Shape& s) {
  Vec y(x.size());
  const int64_t hw = s[2] * s[3];
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = (static_cast<int64_t>(i) / hw) % s[1];
    y[i] = (x[i] - m[c]) / std::sqrt(v[c] + kEps) * g[c] + b[c];
  }
  return y;
}

TEST(BatchNormFrozenTest, MatchesReferenceAndFiniteDifferences) {
  std::mt19937_64 rng(4);
  for (const Shape& s : {Shape{1, 3, 1, 1}, Shape{2, 5, 3, 7}, Shape{3, 2, 5, 5}}) {
    SCOPED_TRACE(s.ToString());
    const Shape c{s[1]};
    const Tensor x = testing::RandomTensor(s, rng), g = testing::RandomTensor(c, rng),
                 b = testing::RandomTensor(c, rng), m = testing::RandomTensor(c, rng),
                 v = testing::RandomTensor(c, rng, 0.1f, 2.0f);
    const Vec xv = ToDouble(x), gv = ToDouble(g), bv = ToDouble(b), mv = ToDouble(m), vv = ToDouble(v);
    const Tensor y = testing::EmptyF32(s);
    ASSERT_TRUE(BatchNorm2dFrozenForward(x, g, b, m, v, kEps, y).ok());
    ExpectClose(y, Reference(xv, gv, bv, mv, vv, s), 1e-5, 1e-6, "forward");
    const Tensor dy = testing::RandomTensor(s, rng);
    const Vec dyv = ToDouble(dy);
    const Tensor dx = testing::EmptyF32(s), dg = testing::EmptyF32(c), db = testing::EmptyF32(c);
    ASSERT_TRUE(BatchNorm2dFrozenBackward(x, g, m, v, kEps, dy, dx, dg, db).ok());
    ExpectClose(dx, testing::NumericalGradient([&](const Vec& p) { return Reference(p, gv, bv, mv, vv, s); }, xv, dyv),
                1e-4, 1e-6, "dx");
    ExpectClose(dg, testing::NumericalGradient([&](const Vec& p) { return Reference(xv, p, bv, mv, vv, s); }, gv, dyv),
                1e-4, 1e-6, "dgamma");
    const Vec gb = testing::NumericalGradient([&](const Vec& p) { return Reference(xv, gv, p, mv, vv, s); }, bv, dyv);
    ExpectClose(db, gb, 1e-4, 1e-6, "dbeta");
    // Bias-only fine-tuning: only dbeta, accumulated.
    ASSERT_TRUE(BatchNorm2dFrozenBackward(x, g, m, v, kEps, dy, Tensor(), Tensor(), db,
                                          GradMode::kAccumulate).ok());
    Vec gb2 = gb;
    for (double& e : gb2) e *= 2;
    ExpectClose(db, gb2, 1e-4, 1e-6, "accumulated dbeta");
  }
}

TEST(BatchNormFrozenTest, MatchesPyTorchEvalMode) {
  const SafetensorsFile f = testing::LoadFixture("batchnorm");
  auto get = [&](const char* k) { return f.Get(k).value(); };
  const Tensor x = get("x");
  const Tensor y = testing::EmptyF32(x.shape());
  ASSERT_TRUE(BatchNorm2dFrozenForward(x, get("gamma"), get("beta"), get("mean"), get("var"),
                                       1e-5f, y).ok());
  ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-6, "y");
  const Tensor dx = testing::EmptyF32(x.shape()), dg = testing::EmptyF32(get("gamma").shape()),
               db = testing::EmptyF32(get("beta").shape());
  ASSERT_TRUE(BatchNorm2dFrozenBackward(x, get("gamma"), get("mean"), get("var"), 1e-5f, get("dy"),
                                        dx, dg, db).ok());
  ExpectClose(dx, ToDouble(get("dx")), 1e-5, 1e-6, "dx");
  ExpectClose(dg, ToDouble(get("dgamma")), 1e-5, 1e-5, "dgamma");
  ExpectClose(db, ToDouble(get("dbeta")), 1e-5, 1e-5, "dbeta");
}

TEST(BatchNormFrozenTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{2, 3, 4, 4}, rng);
  const Tensor c3 = testing::RandomTensor(Shape{3}, rng, 0.5f, 1.0f);
  const Tensor c4 = testing::RandomTensor(Shape{4}, rng);
  const Tensor y = testing::EmptyF32(x.shape());
  ExpectStatus(BatchNorm2dFrozenForward(x, c4, c3, c3, c3, 1e-5f, y),
               absl::StatusCode::kInvalidArgument, {"gamma", "f32[4]", "[3]"});
  ExpectStatus(BatchNorm2dFrozenForward(x, c3, c3, c3, c3, 0.0f, y),
               absl::StatusCode::kInvalidArgument, {"eps = 0"});
  const Tensor neg = testing::FromDouble({1, -1, 1}, Shape{3});
  ExpectStatus(BatchNorm2dFrozenForward(x, c3, c3, c3, neg, 1e-5f, y),
               absl::StatusCode::kInvalidArgument, {"running_var[1] = -1"});
  ExpectStatus(BatchNorm2dFrozenForward(testing::MakeStrided(x), c3, c3, c3, c3, 1e-5f, y),
               absl::StatusCode::kInvalidArgument, {"x", "not contiguous"});
  ExpectStatus(BatchNorm2dFrozenForward(testing::RandomTensor(Shape{2, 3}, rng), c3, c3, c3, c3,
                                        1e-5f, y),
               absl::StatusCode::kInvalidArgument, {"rank 4"});
}

}  // namespace
}  // namespace strata::cpu
