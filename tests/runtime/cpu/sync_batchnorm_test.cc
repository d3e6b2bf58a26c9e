// BatchNorm2d over a batch split among W ranks (runtime/cpu/sync_batchnorm.h), with the sum over
// the ranks done here: against a double-precision reference over the whole batch, forward and
// backward, on data whose mean is large against its spread; bit-identical statistics on every
// rank whatever the order of the sum; equal to the one-process kernel in a world of one.
#include "runtime/cpu/sync_batchnorm.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/batchnorm.h"
#include "runtime/threading.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::FromDouble;
using testing::RandomTensor;
using testing::ToDouble;
using testing::Vec;

constexpr float kEps = 1e-5f;
constexpr float kMomentum = 0.1f;

// Rows [first, first + n) of x (B, C, H, W), as a tensor of their own.
Tensor RowsOf(const Tensor& x, int64_t first, int64_t n) {
  const int64_t row = x.numel() / x.dim(0);
  Vec all = ToDouble(x);
  return FromDouble(Vec(all.begin() + first * row, all.begin() + (first + n) * row),
                    Shape{n, x.dim(1), x.dim(2), x.dim(3)});
}

// The whole batch's statistics in double: mean and biased variance per channel.
void Moments(const Vec& x, const Shape& s, Vec& mean, Vec& var) {
  const int64_t c = s[1], hw = s[2] * s[3], n = s[0];
  mean.assign(c, 0);
  var.assign(c, 0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t k = 0; k < hw; ++k) mean[ch] += x[(i * c + ch) * hw + k];
  for (double& m : mean) m /= static_cast<double>(n * hw);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t k = 0; k < hw; ++k) {
        const double d = x[(i * c + ch) * hw + k] - mean[ch];
        var[ch] += d * d;
      }
  for (double& v : var) v /= static_cast<double>(n * hw);
}

Vec ReferenceForward(const Vec& x, const Vec& g, const Vec& b, const Shape& s) {
  Vec mean, var, y(x.size());
  Moments(x, s, mean, var);
  const int64_t c = s[1], hw = s[2] * s[3];
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t ch = (static_cast<int64_t>(i) / hw) % c;
    y[i] = (x[i] - mean[ch]) / std::sqrt(var[ch] + kEps) * g[ch] + b[ch];
  }
  return y;
}

struct Split {
  std::vector<Tensor> y, mean, rstd, running_mean, running_var, dx, dgamma, dbeta;
};

// Runs forward and backward on `world` ranks holding rows [r * B / W, (r + 1) * B / W), the sums
// over the ranks added here in `order`.
Split RunOnRanks(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& dy,
                 int world, const std::vector<int>& order) {
  const int64_t n = x.dim(0) / world, c = x.dim(1);
  Split r;
  std::vector<Tensor> stats(world), xs(world), dys(world);
  for (int k = 0; k < world; ++k) {
    xs[k] = RowsOf(x, k * n, n);
    dys[k] = RowsOf(dy, k * n, n);
    stats[k] = testing::EmptyF32(Shape{world, 4, c});
    EXPECT_TRUE(BatchNorm2dLocalStats(xs[k], k, stats[k]).ok());
  }
  auto sum_over_ranks = [&](const std::vector<Tensor>& parts) {
    Tensor s = testing::ZerosF32(parts[0].shape());
    for (int k : order) {
      for (int64_t i = 0; i < s.numel(); ++i) s.data<float>()[i] += parts[k].data<float>()[i];
    }
    return s;
  };
  const Tensor summed = sum_over_ranks(stats);
  std::vector<Tensor> grad_stats(world);
  for (int k = 0; k < world; ++k) {
    r.y.push_back(testing::EmptyF32(xs[k].shape()));
    r.mean.push_back(testing::EmptyF32(Shape{c}));
    r.rstd.push_back(testing::EmptyF32(Shape{c}));
    r.running_mean.push_back(testing::ZerosF32(Shape{c}));
    r.running_var.push_back(FromDouble(Vec(c, 1.0), Shape{c}));
    EXPECT_TRUE(BatchNorm2dSyncedForward(xs[k], gamma, beta, summed, kEps, r.y[k], r.mean[k],
                                         r.rstd[k], r.running_mean[k], r.running_var[k],
                                         kMomentum)
                    .ok());
    grad_stats[k] = testing::EmptyF32(Shape{world, 4, c});
    r.dgamma.push_back(testing::EmptyF32(Shape{c}));
    r.dbeta.push_back(testing::EmptyF32(Shape{c}));
    EXPECT_TRUE(BatchNorm2dLocalGradStats(xs[k], r.mean[k], r.rstd[k], dys[k], k, grad_stats[k],
                                          r.dgamma[k], r.dbeta[k])
                    .ok());
  }
  const Tensor grad_summed = sum_over_ranks(grad_stats);
  for (int k = 0; k < world; ++k) {
    r.dx.push_back(testing::EmptyF32(xs[k].shape()));
    EXPECT_TRUE(BatchNorm2dSyncedBackward(xs[k], gamma, r.mean[k], r.rstd[k], dys[k], grad_summed,
                                          r.dx[k])
                    .ok());
  }
  return r;
}

Vec Concat(const std::vector<Tensor>& parts) {
  Vec all;
  for (const Tensor& t : parts) {
    const Vec v = ToDouble(t);
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

// Values near 1000 with a spread of 1: E[x^2] - E[x]^2 in f32 would lose every digit of the
// variance; the merged statistics keep it.
TEST(SyncBatchNormTest, SplitOverRanksMatchesDoubleReferenceOverTheWholeBatch) {
  const Shape shape{6, 3, 4, 5};
  std::mt19937_64 rng(11);
  const Tensor x = RandomTensor(shape, rng, 999.0f, 1001.0f);
  const Tensor gamma = RandomTensor(Shape{3}, rng, 0.5f, 1.5f);
  const Tensor beta = RandomTensor(Shape{3}, rng);
  const Tensor dy = RandomTensor(shape, rng);
  const Vec xd = ToDouble(x), gd = ToDouble(gamma), bd = ToDouble(beta), dyd = ToDouble(dy);
  Vec mean, var;
  Moments(xd, shape, mean, var);
  Vec unbiased(3), rstd(3), running_var(3), running_mean(3);
  const double count = 6 * 4 * 5;
  for (int c = 0; c < 3; ++c) {
    rstd[c] = 1.0 / std::sqrt(var[c] + kEps);
    running_mean[c] = kMomentum * mean[c];
    running_var[c] = (1 - kMomentum) + kMomentum * var[c] * count / (count - 1);
  }
  const Vec y_ref = ReferenceForward(xd, gd, bd, shape);
  // dx by central differences of sum(y * dy); dgamma and dbeta in closed form.
  const Vec dx_ref = testing::NumericalGradient(
      [&](const Vec& v) { return ReferenceForward(v, gd, bd, shape); }, xd, dyd, 1e-4);
  Vec dgamma_ref(3, 0), dbeta_ref(3, 0);
  for (size_t i = 0; i < xd.size(); ++i) {
    const int64_t c = (static_cast<int64_t>(i) / 20) % 3;
    dgamma_ref[c] += dyd[i] * (xd[i] - mean[c]) * rstd[c];
    dbeta_ref[c] += dyd[i];
  }
  for (int world : {1, 2, 3}) {
    SCOPED_TRACE(absl::StrCat("world of ", world));
    std::vector<int> order;
    for (int k = world - 1; k >= 0; --k) order.push_back(k);
    const Split s = RunOnRanks(x, gamma, beta, dy, world, order);
    ExpectClose(Concat(s.y), y_ref, 1e-4, 1e-4, "y");
    ExpectClose(Concat(s.dx), dx_ref, 1e-3, 1e-4, "dx");
    Vec dgamma(3, 0), dbeta(3, 0);
    for (int k = 0; k < world; ++k) {
      const Vec g = ToDouble(s.dgamma[k]), b = ToDouble(s.dbeta[k]);
      for (int c = 0; c < 3; ++c) {
        dgamma[c] += g[c];
        dbeta[c] += b[c];
      }
    }
    ExpectClose(dgamma, dgamma_ref, 1e-4, 1e-5, "dgamma summed over the ranks");
    ExpectClose(dbeta, dbeta_ref, 1e-5, 1e-5, "dbeta summed over the ranks");
    for (int k = 0; k < world; ++k) {
      ExpectClose(s.mean[k], mean, 1e-7, 0, "save_mean");
      ExpectClose(s.rstd[k], rstd, 1e-6, 0, "save_rstd");
      ExpectClose(s.running_mean[k], running_mean, 1e-7, 0, "running_mean");
      ExpectClose(s.running_var[k], running_var, 1e-6, 0, "running_var (unbiased)");
      // Every rank merged the same bytes: the same statistics, bit for bit.
      EXPECT_TRUE(SameBytes(s.mean[k], s.mean[0]) && SameBytes(s.rstd[k], s.rstd[0]) &&
                  SameBytes(s.running_var[k], s.running_var[0]))
          << "rank " << k << " of " << world;
    }
  }
}

// The sums over the ranks are exact (each value is added to zeros), so their order changes
// nothing, and neither does the thread count.
TEST(SyncBatchNormTest, OrderOfTheSumAndThreadCountChangeNoBit) {
  const Shape shape{8, 5, 6, 6};
  std::mt19937_64 rng(3);
  const Tensor x = RandomTensor(shape, rng, -3.0f, 5.0f);
  const Tensor gamma = RandomTensor(Shape{5}, rng), beta = RandomTensor(Shape{5}, rng);
  const Tensor dy = RandomTensor(shape, rng);
  const int threads = NumThreads();
  SetNumThreads(1);
  const Split a = RunOnRanks(x, gamma, beta, dy, 4, {0, 1, 2, 3});
  SetNumThreads(2);
  const Split b = RunOnRanks(x, gamma, beta, dy, 4, {2, 0, 3, 1});
  SetNumThreads(threads);
  for (int k = 0; k < 4; ++k) {
    EXPECT_TRUE(SameBytes(a.y[k], b.y[k])) << "y of rank " << k;
    EXPECT_TRUE(SameBytes(a.dx[k], b.dx[k])) << "dx of rank " << k;
    EXPECT_TRUE(SameBytes(a.running_var[k], b.running_var[k])) << "running_var of rank " << k;
  }
}

// A world of one is the one-process kernel, to float rounding of the statistics.
TEST(SyncBatchNormTest, WorldOfOneIsTheOneProcessKernel) {
  const Shape shape{4, 3, 5, 5};
  std::mt19937_64 rng(5);
  const Tensor x = RandomTensor(shape, rng, -2.0f, 3.0f);
  const Tensor gamma = RandomTensor(Shape{3}, rng), beta = RandomTensor(Shape{3}, rng);
  const Tensor dy = RandomTensor(shape, rng);
  const Split s = RunOnRanks(x, gamma, beta, dy, 1, {0});
  Tensor y = testing::EmptyF32(shape), mean = testing::EmptyF32(Shape{3}),
         rstd = testing::EmptyF32(Shape{3}), rm = testing::ZerosF32(Shape{3}),
         rv = FromDouble(Vec(3, 1.0), Shape{3});
  ASSERT_TRUE(BatchNorm2dTrainForward(x, gamma, beta, kEps, y, mean, rstd, rm, rv, kMomentum).ok());
  Tensor dx = testing::EmptyF32(shape), dg = testing::EmptyF32(Shape{3}),
         db = testing::EmptyF32(Shape{3});
  ASSERT_TRUE(BatchNorm2dTrainBackward(x, gamma, mean, rstd, dy, dx, dg, db).ok());
  ExpectClose(s.y[0], ToDouble(y), 1e-6, 1e-6, "y");
  ExpectClose(s.mean[0], ToDouble(mean), 1e-7, 1e-7, "save_mean");
  ExpectClose(s.rstd[0], ToDouble(rstd), 1e-6, 0, "save_rstd");
  ExpectClose(s.running_var[0], ToDouble(rv), 1e-6, 0, "running_var");
  ExpectClose(s.dx[0], ToDouble(dx), 1e-5, 1e-6, "dx");
  ExpectClose(s.dgamma[0], ToDouble(dg), 1e-6, 1e-6, "dgamma");
  ExpectClose(s.dbeta[0], ToDouble(db), 1e-6, 1e-6, "dbeta");
}

TEST(SyncBatchNormTest, BadArgumentsAreNamed) {
  std::mt19937_64 rng(1);
  const Tensor x = RandomTensor(Shape{2, 3, 2, 2}, rng);
  const Tensor g = RandomTensor(Shape{3}, rng), b = RandomTensor(Shape{3}, rng);
  ExpectStatus(BatchNorm2dLocalStats(x, 0, testing::EmptyF32(Shape{2, 4, 5})),
               absl::StatusCode::kInvalidArgument,
               {"BatchNorm2dLocalStats", "stats is", "expected (world, 4, 3)"});
  ExpectStatus(BatchNorm2dLocalStats(x, 2, testing::EmptyF32(Shape{2, 4, 3})),
               absl::StatusCode::kInvalidArgument, {"rank 2 is outside the world of 2"});
  const Tensor one_value = RandomTensor(Shape{1, 3, 1, 1}, rng);
  Tensor stats = testing::EmptyF32(Shape{1, 4, 3});
  ASSERT_TRUE(BatchNorm2dLocalStats(one_value, 0, stats).ok());
  ExpectStatus(BatchNorm2dSyncedForward(one_value, g, b, stats, kEps,
                                        testing::EmptyF32(one_value.shape()), Tensor(), Tensor()),
               absl::StatusCode::kInvalidArgument,
               {"BatchNorm2dSyncedForward", "on 1 ranks", "more than 1 value per channel"});
  ExpectStatus(BatchNorm2dSyncedForward(x, g, b, testing::EmptyF32(Shape{2, 4, 3}), 0.0f,
                                        testing::EmptyF32(x.shape()), Tensor(), Tensor()),
               absl::StatusCode::kInvalidArgument, {"eps = 0 must be > 0"});
  ExpectStatus(BatchNorm2dSyncedBackward(x, g, g, g, x, testing::EmptyF32(Shape{2, 3, 3}),
                                         testing::EmptyF32(x.shape())),
               absl::StatusCode::kInvalidArgument, {"grad_stats is", "expected (world, 4, 3)"});
}

}  // namespace
}  // namespace strata::cpu
