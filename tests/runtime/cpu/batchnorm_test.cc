#include "runtime/cpu/batchnorm.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "runtime/threading.h"
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
    // Without dgamma, x is not needed: the same dx and dbeta from dy alone.
    const Tensor dx_alone = testing::EmptyF32(s), db_alone = testing::EmptyF32(c);
    ASSERT_TRUE(BatchNorm2dFrozenBackward(Tensor(), g, m, v, kEps, dy, dx_alone, Tensor(),
                                          db_alone).ok());
    ExpectClose(dx_alone, testing::NumericalGradient([&](const Vec& p) { return Reference(p, gv, bv, mv, vv, s); }, xv, dyv),
                1e-4, 1e-6, "dx without x");
    ExpectClose(db_alone, gb, 1e-4, 1e-6, "dbeta without x");
    testing::ExpectStatus(BatchNorm2dFrozenBackward(Tensor(), g, m, v, kEps, dy, Tensor(), dg, db),
                          absl::StatusCode::kInvalidArgument, {"dgamma needs x"});
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

// Training mode in double: y from the batch's mean and biased variance per channel.
struct TrainRef {
  Vec y, mean, var;  // var biased
};
TrainRef TrainReference(const Vec& x, const Vec& g, const Vec& b, const Shape& s) {
  const int64_t n = s[0], c = s[1], hw = s[2] * s[3];
  TrainRef r{Vec(x.size()), Vec(c, 0.0), Vec(c, 0.0)};
  const double count = static_cast<double>(n * hw);
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < hw; ++k) r.mean[ch] += x[(i * c + ch) * hw + k] / count;
    }
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < hw; ++k) {
        const double d = x[(i * c + ch) * hw + k] - r.mean[ch];
        r.var[ch] += d * d / count;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < hw; ++k) {
        const int64_t at = (i * c + ch) * hw + k;
        r.y[at] = (x[at] - r.mean[ch]) / std::sqrt(r.var[ch] + kEps) * g[ch] + b[ch];
      }
    }
  }
  return r;
}

TEST(BatchNormTrainTest, MatchesReferenceAndFiniteDifferences) {
  std::mt19937_64 rng(7);
  for (const Shape& s : {Shape{1, 3, 2, 3}, Shape{2, 5, 3, 7}, Shape{3, 2, 5, 5},
                         Shape{7, 3, 1, 1}}) {
    SCOPED_TRACE(s.ToString());
    const Shape c{s[1]};
    // An offset of 20 in x: the statistics must not lose digits to it.
    const Tensor x = testing::RandomTensor(s, rng, 19.0f, 21.0f), g = testing::RandomTensor(c, rng),
                 b = testing::RandomTensor(c, rng);
    const Vec xv = ToDouble(x), gv = ToDouble(g), bv = ToDouble(b);
    const TrainRef ref = TrainReference(xv, gv, bv, s);
    const Tensor y = testing::EmptyF32(s), mean = testing::EmptyF32(c), rstd = testing::EmptyF32(c);
    const Tensor rm = testing::RandomTensor(c, rng), rv = testing::RandomTensor(c, rng, 0.5f, 2.0f);
    const Vec rm0 = ToDouble(rm), rv0 = ToDouble(rv);
    ASSERT_TRUE(BatchNorm2dTrainForward(x, g, b, kEps, y, mean, rstd, rm, rv, 0.1f).ok());
    ExpectClose(y, ref.y, 1e-4, 1e-5, "forward");
    ExpectClose(mean, ref.mean, 1e-6, 1e-6, "save_mean");
    Vec rstd_ref(c[0]), rm_ref(c[0]), rv_ref(c[0]);
    const double count = static_cast<double>(s[0] * s[2] * s[3]);
    for (int64_t ch = 0; ch < c[0]; ++ch) {
      rstd_ref[ch] = 1 / std::sqrt(ref.var[ch] + kEps);
      rm_ref[ch] = 0.9 * rm0[ch] + 0.1 * ref.mean[ch];
      rv_ref[ch] = 0.9 * rv0[ch] + 0.1 * ref.var[ch] * count / (count - 1);
    }
    ExpectClose(rstd, rstd_ref, 1e-4, 1e-6, "save_rstd");
    ExpectClose(rm, rm_ref, 1e-6, 1e-6, "running_mean");
    ExpectClose(rv, rv_ref, 1e-5, 1e-6, "running_var");

    const Tensor dy = testing::RandomTensor(s, rng);
    const Vec dyv = ToDouble(dy);
    const Tensor dx = testing::EmptyF32(s), dg = testing::EmptyF32(c), db = testing::EmptyF32(c);
    ASSERT_TRUE(BatchNorm2dTrainBackward(x, g, mean, rstd, dy, dx, dg, db).ok());
    // Finite differences of the reference with x near 20 need a larger step than 1e-6.
    ExpectClose(dx,
                testing::NumericalGradient(
                    [&](const Vec& p) { return TrainReference(p, gv, bv, s).y; }, xv, dyv, 1e-5),
                2e-3, 2e-4, "dx");
    ExpectClose(dg,
                testing::NumericalGradient(
                    [&](const Vec& p) { return TrainReference(xv, p, bv, s).y; }, gv, dyv),
                1e-4, 1e-5, "dgamma");
    const Vec gb = testing::NumericalGradient(
        [&](const Vec& p) { return TrainReference(xv, gv, p, s).y; }, bv, dyv);
    ExpectClose(db, gb, 1e-4, 1e-5, "dbeta");
    // Only dbeta, accumulated; and dx alone.
    ASSERT_TRUE(BatchNorm2dTrainBackward(x, g, mean, rstd, dy, Tensor(), Tensor(), db,
                                         GradMode::kAccumulate).ok());
    Vec gb2 = gb;
    for (double& e : gb2) e *= 2;
    ExpectClose(db, gb2, 1e-4, 1e-5, "accumulated dbeta");
    const Tensor dx2 = testing::EmptyF32(s);
    ASSERT_TRUE(BatchNorm2dTrainBackward(x, g, mean, rstd, dy, dx2, Tensor(), Tensor()).ok());
    EXPECT_EQ(ToDouble(dx2), ToDouble(dx)) << "dx without dgamma and dbeta";
  }
}

TEST(BatchNormTrainTest, WithoutRunningStatisticsAndInPlace) {
  std::mt19937_64 rng(3);
  const Shape s{2, 3, 4, 5}, c{3};
  const Tensor x = testing::RandomTensor(s, rng), g = testing::RandomTensor(c, rng),
               b = testing::RandomTensor(c, rng);
  const TrainRef ref = TrainReference(ToDouble(x), ToDouble(g), ToDouble(b), s);
  const Tensor mean = testing::EmptyF32(c), rstd = testing::EmptyF32(c);
  ASSERT_TRUE(BatchNorm2dTrainForward(x, g, b, kEps, x, mean, rstd).ok());  // y aliases x
  ExpectClose(x, ref.y, 1e-5, 1e-6, "in-place forward");
}

// Each channel is reduced by one thread in a fixed order: 1 and 2 threads agree bit for bit.
TEST(BatchNormTrainTest, SameBitsForOneAndTwoThreads) {
  std::mt19937_64 rng(11);
  const Shape s{16, 24, 14, 14}, c{24};
  const Tensor x = testing::RandomTensor(s, rng, -3.0f, 5.0f), g = testing::RandomTensor(c, rng),
               b = testing::RandomTensor(c, rng), dy = testing::RandomTensor(s, rng);
  const int threads = NumThreads();
  std::vector<Vec> results[2];
  for (int t : {1, 2}) {
    SetNumThreads(t);
    const Tensor y = testing::EmptyF32(s), m = testing::EmptyF32(c), r = testing::EmptyF32(c),
                 rm = testing::ZerosF32(c), rv = testing::ZerosF32(c), dx = testing::EmptyF32(s),
                 dg = testing::EmptyF32(c), db = testing::EmptyF32(c);
    ASSERT_TRUE(BatchNorm2dTrainForward(x, g, b, kEps, y, m, r, rm, rv, 0.1f).ok());
    ASSERT_TRUE(BatchNorm2dTrainBackward(x, g, m, r, dy, dx, dg, db).ok());
    for (const Tensor* out : {&y, &m, &r, &rm, &rv, &dx, &dg, &db}) {
      results[t - 1].push_back(ToDouble(*out));
    }
  }
  SetNumThreads(threads);
  for (size_t i = 0; i < results[0].size(); ++i) {
    EXPECT_EQ(results[0][i], results[1][i]) << "output " << i;
  }
}

TEST(BatchNormTrainTest, MatchesPyTorchTrainMode) {
  const SafetensorsFile f = testing::LoadFixture("batchnorm");
  auto get = [&](const std::string& k) { return f.Get("train." + k).value(); };
  const Tensor x = get("x");
  const Shape c = get("gamma").shape();
  const Tensor y = testing::EmptyF32(x.shape()), mean = testing::EmptyF32(c),
               rstd = testing::EmptyF32(c);
  const Tensor rm = get("running_mean_in"), rv = get("running_var_in");
  ASSERT_TRUE(BatchNorm2dTrainForward(x, get("gamma"), get("beta"), 1e-5f, y, mean, rstd, rm, rv,
                                      0.1f).ok());
  ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-5, "y");
  ExpectClose(mean, ToDouble(get("save_mean")), 1e-5, 1e-6, "save_mean");
  ExpectClose(rstd, ToDouble(get("save_rstd")), 1e-5, 1e-6, "save_rstd");
  ExpectClose(rm, ToDouble(get("running_mean_out")), 1e-5, 1e-6, "running_mean");
  ExpectClose(rv, ToDouble(get("running_var_out")), 1e-5, 1e-6, "running_var");
  const Tensor dx = testing::EmptyF32(x.shape()), dg = testing::EmptyF32(c),
               db = testing::EmptyF32(c);
  ASSERT_TRUE(BatchNorm2dTrainBackward(x, get("gamma"), mean, rstd, get("dy"), dx, dg, db).ok());
  ExpectClose(dx, ToDouble(get("dx")), 1e-5, 1e-5, "dx");
  ExpectClose(dg, ToDouble(get("dgamma")), 1e-5, 1e-5, "dgamma");
  ExpectClose(db, ToDouble(get("dbeta")), 1e-5, 1e-5, "dbeta");
}

TEST(BatchNormTrainTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{2, 3, 4, 4}, rng);
  const Tensor c3 = testing::RandomTensor(Shape{3}, rng, 0.5f, 1.0f);
  const Tensor c4 = testing::RandomTensor(Shape{4}, rng);
  const Tensor y = testing::EmptyF32(x.shape()), m = testing::EmptyF32(Shape{3}),
               r = testing::EmptyF32(Shape{3});
  ExpectStatus(BatchNorm2dTrainForward(x, c4, c3, 1e-5f, y, m, r),
               absl::StatusCode::kInvalidArgument, {"BatchNorm2dTrainForward", "gamma", "[3]"});
  ExpectStatus(BatchNorm2dTrainForward(x, c3, c3, 1e-5f, y, m, c4),
               absl::StatusCode::kInvalidArgument, {"save_rstd", "f32[4]"});
  ExpectStatus(BatchNorm2dTrainForward(x, c3, c3, 1e-5f, y, m, r, c3, Tensor()),
               absl::StatusCode::kInvalidArgument, {"both defined"});
  ExpectStatus(BatchNorm2dTrainForward(x, c3, c3, 1e-5f, y, m, r, m, r, 1.5f),
               absl::StatusCode::kInvalidArgument, {"momentum = 1.5"});
  ExpectStatus(BatchNorm2dTrainForward(x, c3, c3, -1.0f, y, m, r),
               absl::StatusCode::kInvalidArgument, {"eps = -1"});
  const Tensor one = testing::RandomTensor(Shape{1, 3, 1, 1}, rng);
  ExpectStatus(BatchNorm2dTrainForward(one, c3, c3, 1e-5f, testing::EmptyF32(one.shape()), m, r),
               absl::StatusCode::kInvalidArgument, {"[1, 3, 1, 1]", "more than 1 value"});
  ExpectStatus(BatchNorm2dTrainForward(testing::MakeStrided(x), c3, c3, 1e-5f, y, m, r),
               absl::StatusCode::kInvalidArgument, {"x", "not contiguous"});
  ExpectStatus(BatchNorm2dTrainBackward(x, c3, m, r, testing::EmptyF32(Shape{2, 3, 4, 5}), y,
                                        Tensor(), Tensor()),
               absl::StatusCode::kInvalidArgument, {"BatchNorm2dTrainBackward", "dy"});
  ExpectStatus(BatchNorm2dTrainBackward(x, c3, m, r, y, y, c4, Tensor()),
               absl::StatusCode::kInvalidArgument, {"dgamma", "f32[4]"});
}

}  // namespace
}  // namespace strata::cpu
