#include "runtime/cpu/elementwise.h"

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

Vec Zip(const Vec& a, const Vec& b, double (*f)(double, double)) {
  Vec y(a.size());
  for (size_t i = 0; i < a.size(); ++i) y[i] = f(a[i], b[i]);
  return y;
}

TEST(ElementwiseTest, AddMulScaleAddScaledOnStridedAndContiguous) {
  std::mt19937_64 rng(4);
  for (const Shape& s : {Shape{1}, Shape{13}, Shape{3, 7, 11}}) {
    for (bool strided : {false, true}) {
      SCOPED_TRACE(s.ToString() + (strided ? " strided" : ""));
      Tensor a = testing::RandomTensor(s, rng), b = testing::RandomTensor(s, rng);
      const Vec av = ToDouble(a), bv = ToDouble(b);
      if (strided) {
        a = testing::MakeStrided(a);
        b = testing::MakeStrided(b);
      }
      const Tensor out = strided ? testing::MakeStrided(testing::EmptyF32(s)) : testing::EmptyF32(s);
      ASSERT_TRUE(Add(a, b, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double y) { return x + y; }), 1e-6, 1e-7, "add");
      ASSERT_TRUE(Mul(a, b, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double y) { return x * y; }), 1e-6, 1e-7, "mul");
      ASSERT_TRUE(AddScaled(a, b, -0.25f, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double y) { return x - 0.25 * y; }), 1e-6, 1e-7, "axpy");
      ASSERT_TRUE(Scale(a, 3.0f, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double) { return 3 * x; }), 1e-6, 1e-7, "scale");
      // Mul backward against finite differences of the product.
      const Tensor dout = testing::RandomTensor(s, rng);
      const Tensor da = testing::EmptyF32(s), db = testing::EmptyF32(s);
      ASSERT_TRUE(MulBackward(a, b, dout, da, db).ok());
      auto mul_a = [&](const Vec& v) { return Zip(v, bv, [](double x, double y) { return x * y; }); };
      auto mul_b = [&](const Vec& v) { return Zip(av, v, [](double x, double y) { return x * y; }); };
      ExpectClose(da, testing::NumericalGradient(mul_a, av, ToDouble(dout)), 1e-5, 1e-6, "da");
      ExpectClose(db, testing::NumericalGradient(mul_b, bv, ToDouble(dout)), 1e-5, 1e-6, "db");
    }
  }
}

// The arithmetic of custom models against a double reference: a - b, a / b, alpha x + beta, x^p
// (integral and not), exp, log, sqrt and rsqrt, on positive inputs where the function needs them.
TEST(ElementwiseTest, ArithmeticAndMathAgainstDoubleReference) {
  std::mt19937_64 rng(8);
  for (const Shape& s : {Shape{1}, Shape{13}, Shape{3, 7, 11}}) {
    for (bool strided : {false, true}) {
      SCOPED_TRACE(s.ToString() + (strided ? " strided" : ""));
      Tensor a = testing::RandomTensor(s, rng), b = testing::RandomTensor(s, rng, 0.5f, 3.0f);
      const Vec av = ToDouble(a), bv = ToDouble(b);
      if (strided) {
        a = testing::MakeStrided(a);
        b = testing::MakeStrided(b);
      }
      const Tensor out = strided ? testing::MakeStrided(testing::EmptyF32(s)) : testing::EmptyF32(s);
      ASSERT_TRUE(Sub(a, b, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double y) { return x - y; }), 1e-6, 1e-7, "sub");
      ASSERT_TRUE(Div(a, b, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double y) { return x / y; }), 1e-6, 1e-7, "div");
      ASSERT_TRUE(ScaleShift(a, -1.5f, 0.25f, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double) { return -1.5 * x + 0.25; }), 1e-6, 1e-7,
                  "scale shift");
      ASSERT_TRUE(Pow(a, 2.0f, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double) { return x * x; }), 1e-6, 1e-7, "x^2");
      ASSERT_TRUE(Pow(a, 3.0f, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double) { return x * x * x; }), 1e-6, 1e-7, "x^3");
      ASSERT_TRUE(Pow(b, -0.75f, out).ok());
      ExpectClose(out, Zip(bv, bv, [](double x, double) { return std::pow(x, -0.75); }), 1e-6,
                  1e-7, "x^-0.75");
      ASSERT_TRUE(Exp(a, out).ok());
      ExpectClose(out, Zip(av, bv, [](double x, double) { return std::exp(x); }), 1e-6, 1e-7, "exp");
      ASSERT_TRUE(Log(b, out).ok());
      ExpectClose(out, Zip(bv, bv, [](double x, double) { return std::log(x); }), 1e-6, 1e-7, "log");
      ASSERT_TRUE(Sqrt(b, out).ok());
      ExpectClose(out, Zip(bv, bv, [](double x, double) { return std::sqrt(x); }), 1e-6, 1e-7,
                  "sqrt");
      ASSERT_TRUE(Rsqrt(b, out).ok());
      ExpectClose(out, Zip(bv, bv, [](double x, double) { return 1 / std::sqrt(x); }), 1e-6, 1e-7,
                  "rsqrt");
    }
  }
}

TEST(ElementwiseTest, BroadcastRowsRepeatsItsInputOnEveryRow) {
  std::mt19937_64 rng(9);
  for (const Shape& s : {Shape{1, 1}, Shape{5, 3}, Shape{2, 9, 130}}) {
    SCOPED_TRACE(s.ToString());
    const int64_t c = s.dim(-1);
    const Tensor x = testing::RandomTensor(Shape{c}, rng), out = testing::EmptyF32(s);
    ASSERT_TRUE(BroadcastRows(x, out).ok());
    const Vec xv = ToDouble(x);
    Vec ref(s.numel());
    for (int64_t i = 0; i < s.numel(); ++i) ref[i] = xv[i % c];
    EXPECT_EQ(ToDouble(out), ref);  // copies: exact
  }
  ExpectStatus(BroadcastRows(testing::RandomTensor(Shape{4}, rng), testing::EmptyF32(Shape{2, 3})),
               absl::StatusCode::kInvalidArgument, {"BroadcastRows", "x", "f32[4]", "f32[3]"});
}

TEST(ElementwiseTest, InPlaceResidualAndBf16) {
  std::mt19937_64 rng(5);
  const Tensor x = testing::RandomTensor(Shape{5, 8}, rng), r = testing::RandomTensor(Shape{5, 8}, rng);
  const Vec expect = Zip(ToDouble(x), ToDouble(r), [](double a, double b) { return a + b; });
  ASSERT_TRUE(Add(x, r, x).ok());
  ExpectClose(x, expect, 1e-6, 1e-7, "x += r");
  Tensor xb = Tensor::Empty(x.shape(), DType::kBF16, DefaultCpuAllocator()).value();
  Tensor rb = Tensor::Empty(x.shape(), DType::kBF16, DefaultCpuAllocator()).value();
  ASSERT_TRUE(xb.CopyFrom(x).ok());
  ASSERT_TRUE(rb.CopyFrom(r).ok());
  const Vec expect_b = Zip(ToDouble(xb), ToDouble(rb), [](double a, double b) { return a * b; });
  ASSERT_TRUE(Mul(xb, rb, xb).ok());
  ExpectClose(xb, expect_b, 1.0 / 128, 1e-3, "bf16 mul");
}

TEST(ElementwiseTest, BiasAddAndGradAgainstReference) {
  std::mt19937_64 rng(6);
  // The larger shapes split over threads by column ranges, leave a row remainder after the
  // four-row passes, and (2500 columns) take more than one accumulator block.
  for (const Shape& s : {Shape{1, 1}, Shape{7, 3}, Shape{2, 9, 130}, Shape{37, 1100}, Shape{9, 2500}}) {
    SCOPED_TRACE(s.ToString());
    const int64_t c = s.dim(-1), rows = s.numel() / c;
    const Tensor x = testing::RandomTensor(s, rng), bias = testing::RandomTensor(Shape{c}, rng);
    const Tensor y = testing::EmptyF32(s);
    ASSERT_TRUE(AddBias(x, bias, y).ok());
    Vec ref = ToDouble(x);
    const Vec bv = ToDouble(bias);
    for (int64_t i = 0; i < s.numel(); ++i) ref[i] += bv[i % c];
    ExpectClose(y, ref, 1e-6, 1e-7, "bias add");
    const Tensor dy = testing::RandomTensor(s, rng), db = testing::EmptyF32(Shape{c});
    ASSERT_TRUE(BiasGrad(dy, db).ok());
    Vec sums(c, 0.0);
    const Vec dyv = ToDouble(dy);
    for (int64_t i = 0; i < rows * c; ++i) sums[i % c] += dyv[i];
    ExpectClose(db, sums, 1e-5, 1e-6, "bias grad");
    ASSERT_TRUE(BiasGrad(dy, db, GradMode::kAccumulate).ok());
    for (double& v : sums) v *= 2;
    ExpectClose(db, sums, 1e-5, 1e-6, "accumulated bias grad");
  }
}

TEST(ElementwiseTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("elementwise");
  auto get = [&](const char* k) { return f.Get(k).value(); };
  const Tensor a = get("a"), b = get("b"), out = testing::EmptyF32(a.shape());
  ASSERT_TRUE(Mul(a, b, out).ok());
  ExpectClose(out, ToDouble(get("mul.y")), 1e-5, 1e-7, "mul");
  const Tensor da = testing::EmptyF32(a.shape()), db = testing::EmptyF32(a.shape());
  ASSERT_TRUE(MulBackward(a, b, get("mul.dy"), da, db).ok());
  ExpectClose(da, ToDouble(get("mul.da")), 1e-5, 1e-7, "mul da");
  ExpectClose(db, ToDouble(get("mul.db")), 1e-5, 1e-7, "mul db");
  ASSERT_TRUE(AddScaled(a, b, 0.5f, out).ok());
  ExpectClose(out, ToDouble(get("axpy.y")), 1e-5, 1e-7, "a + 0.5 b");
  ASSERT_TRUE(AddBias(a, get("bias"), out).ok());
  ExpectClose(out, ToDouble(get("bias.y")), 1e-5, 1e-7, "bias add");
  const Tensor dbias = testing::EmptyF32(get("bias").shape());
  ASSERT_TRUE(BiasGrad(get("bias.dy"), dbias).ok());
  ExpectClose(dbias, ToDouble(get("bias.db")), 1e-5, 1e-6, "bias grad");
  // The math functions, on positive inputs (p) where they need them.
  const Tensor p = get("p");
  const Tensor y = testing::EmptyF32(p.shape());
  ASSERT_TRUE(Div(a, p, out).ok());
  ExpectClose(out, ToDouble(get("div.y")), 1e-5, 1e-7, "div");
  ASSERT_TRUE(Sub(a, p, out).ok());
  ExpectClose(out, ToDouble(get("sub.y")), 1e-5, 1e-7, "sub");
  ASSERT_TRUE(Pow(p, 1.5f, y).ok());
  ExpectClose(y, ToDouble(get("pow.y")), 1e-5, 1e-7, "pow 1.5");
  for (const auto& [name, fn] : std::vector<std::pair<std::string, absl::Status (*)(const Tensor&, const Tensor&)>>{
           {"exp", Exp}, {"log", Log}, {"sqrt", Sqrt}, {"rsqrt", Rsqrt}}) {
    ASSERT_TRUE(fn(p, y).ok());
    ExpectClose(y, ToDouble(get((name + ".y").c_str())), 1e-5, 1e-7, name);
  }
}

TEST(ElementwiseTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor a = testing::RandomTensor(Shape{3, 4}, rng);
  ExpectStatus(Add(a, testing::RandomTensor(Shape{4, 3}, rng), testing::EmptyF32(Shape{3, 4})),
               absl::StatusCode::kInvalidArgument, {"Add", "b", "[4, 3]", "[3, 4]"});
  ExpectStatus(AddBias(a, testing::RandomTensor(Shape{3}, rng), testing::EmptyF32(Shape{3, 4})),
               absl::StatusCode::kInvalidArgument, {"AddBias", "bias", "f32[3]", "f32[4]"});
  ExpectStatus(Mul(a, a, Tensor()), absl::StatusCode::kInvalidArgument, {"out", "undefined"});
  ExpectStatus(BiasGrad(testing::MakeStrided(a), testing::EmptyF32(Shape{4})),
               absl::StatusCode::kInvalidArgument, {"not contiguous"});
}

}  // namespace
}  // namespace strata::cpu
