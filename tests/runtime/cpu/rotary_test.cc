#include "runtime/cpu/rotary.h"

#include <cmath>
#include <array>
#include <random>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

// y for x (B, T, H, D) from the angles t theta^(-2i/D), in double.
Vec Reference(const Vec& x, int64_t B, int64_t T, int64_t H, int64_t D, double theta) {
  Vec y(x.size());
  const int64_t half = D / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double a = t * std::pow(theta, -2.0 * i / D);
          const int64_t o = ((b * T + t) * H + h) * D + i;
          y[o] = x[o] * std::cos(a) - x[o + half] * std::sin(a);
          y[o + half] = x[o + half] * std::cos(a) + x[o] * std::sin(a);
        }
  return y;
}

TEST(RotaryTest, ForwardBackwardAgainstReference) {
  std::mt19937_64 rng(5);
  for (auto [B, T, H, D] : {std::array<int64_t, 4>{1, 1, 1, 2}, {2, 5, 3, 8}, {3, 40, 4, 64}}) {
    SCOPED_TRACE(::testing::Message() << B << "x" << T << "x" << H << "x" << D);
    const Tensor table = testing::EmptyF32(Shape{T + 3, D});  // longer than T: rows 0..T-1 used
    ASSERT_TRUE(RotaryTable(500000.0, RotaryScaling(), table).ok());
    const Tensor x = testing::RandomTensor(Shape{B, T, H, D}, rng);
    const Tensor y = testing::EmptyF32(x.shape());
    ASSERT_TRUE(RotaryForward(x, table, y).ok());
    auto f = [&](const Vec& v) { return Reference(v, B, T, H, D, 500000.0); };
    ExpectClose(y, f(ToDouble(x)), 1e-5, 1e-6, "forward");
    const Tensor dy = testing::RandomTensor(x.shape(), rng);
    const Tensor dx = testing::EmptyF32(x.shape());
    ASSERT_TRUE(RotaryBackward(table, dy, dx).ok());
    if (x.numel() < 1000) {  // the reference is O(n) per call: finite differences on the small cases
      ExpectClose(dx, testing::NumericalGradient(f, ToDouble(x), ToDouble(dy)), 1e-4, 1e-5, "dx");
    }
    // A rotation's transpose is its inverse: <dy, R x> = <R^T dy, x>.
    double lhs = 0, rhs = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      lhs += double(dy.data<float>()[i]) * y.data<float>()[i];
      rhs += double(dx.data<float>()[i]) * x.data<float>()[i];
    }
    EXPECT_NEAR(lhs, rhs, 1e-4 * (1 + std::abs(lhs)));
    // In place: rotating y back gives x.
    ASSERT_TRUE(RotaryBackward(table, y, y).ok());
    ExpectClose(y, ToDouble(x), 1e-5, 1e-6, "inverse in place");
  }
}

TEST(RotaryTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("rotary");
  auto get = [&](const char* k) { return f.Get(k).value(); };
  const Tensor x = get("x");
  const Tensor table = testing::EmptyF32(Shape{x.dim(1), x.dim(3)});
  ASSERT_TRUE(RotaryTable(10000.0, RotaryScaling(), table).ok());
  ExpectClose(table, ToDouble(get("table")), 1e-6, 1e-7, "table");
  const Tensor y = testing::EmptyF32(x.shape()), dx = testing::EmptyF32(x.shape());
  ASSERT_TRUE(RotaryForward(x, table, y).ok());
  ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-6, "y");
  ASSERT_TRUE(RotaryBackward(table, get("dy"), dx).ok());
  ExpectClose(dx, ToDouble(get("dx")), 1e-5, 1e-6, "dx");
  RotaryScaling llama3{.factor = 8, .low_freq_factor = 1, .high_freq_factor = 4,
                       .original_max_positions = 64};
  ASSERT_TRUE(RotaryTable(10000.0, llama3, table).ok());
  ExpectClose(table, ToDouble(get("llama3_table")), 1e-6, 1e-7, "llama3 table");
}

TEST(RotaryTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor table = testing::EmptyF32(Shape{4, 6});
  ExpectStatus(RotaryTable(0.5, RotaryScaling(), table), absl::StatusCode::kInvalidArgument,
               {"theta = 0.5"});
  ExpectStatus(RotaryTable(1e4, RotaryScaling{.factor = 8, .low_freq_factor = 4, .high_freq_factor = 1}, table),
               absl::StatusCode::kInvalidArgument, {"low_freq_factor < high_freq_factor"});
  ExpectStatus(RotaryTable(1e4, RotaryScaling(), testing::EmptyF32(Shape{4, 5})),
               absl::StatusCode::kInvalidArgument, {"RotaryTable", "D even"});
  ASSERT_TRUE(RotaryTable(1e4, RotaryScaling(), table).ok());
  const Tensor x = testing::RandomTensor(Shape{1, 5, 2, 6}, rng);
  ExpectStatus(RotaryForward(x, table, testing::EmptyF32(x.shape())),
               absl::StatusCode::kInvalidArgument, {"RotaryForward", "table", "T >= 5"});
  const Tensor odd = testing::RandomTensor(Shape{1, 2, 2, 5}, rng);
  ExpectStatus(RotaryForward(odd, table, testing::EmptyF32(odd.shape())),
               absl::StatusCode::kInvalidArgument, {"x", "D even"});
}

}  // namespace
}  // namespace strata::cpu
