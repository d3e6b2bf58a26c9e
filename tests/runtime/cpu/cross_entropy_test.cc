#include "runtime/cpu/cross_entropy.h"

#include <cmath>
#include <random>
#include <tuple>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

// Mean over non-ignored rows of -sum_j q_j log softmax(x)_j, q = (1 - e) one_hot(target) + e / V,
// in double.
double Reference(const Vec& x, const Vec& targets, int64_t v, int64_t ignore = -100,
                 double smoothing = 0) {
  double total = 0;
  int count = 0;
  for (size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] == ignore) continue;
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < v; ++i) m = std::max(m, x[r * v + i]);
    for (int64_t i = 0; i < v; ++i) s += std::exp(x[r * v + i] - m);
    const double lse = std::log(s) + m;
    for (int64_t i = 0; i < v; ++i) {
      const double q = (i == static_cast<int64_t>(targets[r]) ? 1 - smoothing : 0) + smoothing / v;
      total += q * (lse - x[r * v + i]);
    }
    ++count;
  }
  return total / count;
}

TEST(CrossEntropyTest, LossAndGradientAgainstReference) {
  std::mt19937_64 rng(17);
  for (auto [rows, v] : {std::pair{1, 1}, {1, 7}, {9, 13}, {6, 257}}) {
    SCOPED_TRACE(::testing::Message() << rows << "x" << v);
    const Tensor logits = testing::RandomTensor(Shape{rows, v}, rng, -5.0f, 5.0f);
    Vec tv(rows);
    for (auto& t : tv) t = static_cast<double>(rng() % v);
    if (rows > 2) tv[1] = -100;  // one ignored row
    const Tensor targets = testing::FromDouble(tv, Shape{rows}, DType::kI64);
    const Tensor loss = testing::EmptyF32(Shape{}), dlogits = testing::EmptyF32(logits.shape());
    ASSERT_TRUE(SoftmaxCrossEntropy(logits, targets, loss, dlogits, 2.0f).ok());
    const Vec xv = ToDouble(logits);
    ExpectClose(loss, {Reference(xv, tv, v)}, 1e-6, 1e-7, "loss");
    const Vec g = testing::NumericalGradient([&](const Vec& x) { return Vec{Reference(x, tv, v)}; }, xv, {2.0});
    ExpectClose(dlogits, g, 1e-4, 1e-6, "dlogits");
    // In place: the gradient written over the logits.
    const Tensor inplace = logits.Contiguous(DefaultCpuAllocator()).value();
    ASSERT_TRUE(SoftmaxCrossEntropy(inplace, targets, loss, inplace, 2.0f).ok());
    ExpectClose(inplace, g, 1e-4, 1e-6, "in-place dlogits");
  }
}

TEST(CrossEntropyTest, LabelSmoothingAndIgnoreIndexAgainstReference) {
  std::mt19937_64 rng(29);
  for (auto [rows, v, smoothing] : {std::tuple{3, 1, 0.5}, {5, 9, 0.1}, {7, 300, 1.0}}) {
    SCOPED_TRACE(::testing::Message() << rows << "x" << v << " smoothing " << smoothing);
    const Tensor logits = testing::RandomTensor(Shape{rows, v}, rng, -4.0f, 4.0f);
    Vec tv(rows);
    for (auto& t : tv) t = static_cast<double>(rng() % v);
    tv[0] = 0;  // ignore_index 0: the first row adds nothing
    const Tensor targets = testing::FromDouble(tv, Shape{rows}, DType::kI32);
    const Tensor loss = testing::EmptyF32(Shape{}), dlogits = testing::EmptyF32(logits.shape());
    ASSERT_TRUE(SoftmaxCrossEntropy(logits, targets, loss, dlogits, 0.5f, /*ignore_index=*/0,
                                    static_cast<float>(smoothing)).ok());
    const Vec xv = ToDouble(logits);
    auto f = [&](const Vec& x) { return Vec{Reference(x, tv, v, 0, smoothing)}; };
    if (rows > 1 && v > 1) ExpectClose(loss, f(xv), 1e-6, 1e-7, "loss");
    if (v > 1) ExpectClose(dlogits, testing::NumericalGradient(f, xv, {0.5}), 1e-4, 1e-6, "dlogits");
  }
  const Tensor logits = testing::FromDouble({1, 2, 3}, Shape{1, 3});
  ExpectStatus(SoftmaxCrossEntropy(logits, testing::FromDouble({1}, Shape{1}, DType::kI32),
                                   testing::EmptyF32(Shape{}), Tensor(), 1.0f, -100, 1.5f),
               absl::StatusCode::kInvalidArgument, {"label_smoothing = 1.5", "[0, 1]"});
}

TEST(CrossEntropyTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("cross_entropy");
  const Tensor logits = f.Get("logits").value();
  const Tensor loss = testing::EmptyF32(Shape{1}), d = testing::EmptyF32(logits.shape());
  ASSERT_TRUE(SoftmaxCrossEntropy(logits, f.Get("targets").value(), loss, d).ok());
  ExpectClose(loss, ToDouble(f.Get("loss").value()), 1e-6, 1e-7, "loss");
  ExpectClose(d, ToDouble(f.Get("dlogits").value()), 1e-5, 1e-7, "dlogits");
  // label_smoothing = 0.1, ignore_index = 3
  const Tensor smooth = f.Get("smooth_logits").value();
  const Tensor ds = testing::EmptyF32(smooth.shape());
  ASSERT_TRUE(SoftmaxCrossEntropy(smooth, f.Get("smooth_targets").value(), loss, ds, 1.0f, 3, 0.1f).ok());
  ExpectClose(loss, ToDouble(f.Get("smooth_loss").value()), 1e-6, 1e-7, "smoothed loss");
  ExpectClose(ds, ToDouble(f.Get("smooth_dlogits").value()), 1e-5, 1e-7, "smoothed dlogits");
}

TEST(CrossEntropyTest, HugeLogitsStayFinite) {
  const Tensor logits = testing::FromDouble({1e4, -1e4, 0}, Shape{1, 3});
  const Tensor loss = testing::EmptyF32(Shape{1});
  ASSERT_TRUE(SoftmaxCrossEntropy(logits, testing::FromDouble({1}, Shape{1}, DType::kI32), loss, Tensor()).ok());
  EXPECT_NEAR(loss.data<float>()[0], 2e4, 1.0);
}

TEST(CrossEntropyTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor logits = testing::RandomTensor(Shape{4, 5}, rng);
  const Tensor loss = testing::EmptyF32(Shape{1});
  ExpectStatus(SoftmaxCrossEntropy(logits, testing::FromDouble({0, 1, 7, 2}, Shape{4}, DType::kI64), loss, Tensor()),
               absl::StatusCode::kOutOfRange, {"targets[2] = 7", "[0, 5)"});
  ExpectStatus(SoftmaxCrossEntropy(logits, testing::FromDouble({0, 1, 2}, Shape{3}, DType::kI64), loss, Tensor()),
               absl::StatusCode::kInvalidArgument, {"3 entries for 4 rows"});
  ExpectStatus(SoftmaxCrossEntropy(logits, testing::FromDouble({0, 1, 2, 3}, Shape{4}, DType::kI64),
                                   testing::EmptyF32(Shape{2}), Tensor()),
               absl::StatusCode::kInvalidArgument, {"loss", "one element"});
}

}  // namespace
}  // namespace strata::cpu
