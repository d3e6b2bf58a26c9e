#include "runtime/cpu/activation.h"

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

struct Activation {
  std::string name;
  std::function<absl::Status(const Tensor&, const Tensor&)> forward;
  std::function<absl::Status(const Tensor&, const Tensor&, const Tensor&)> backward;
  std::function<double(double)> reference;
};

std::vector<Activation> All() {
  return {
      {"gelu", GeluForward, GeluBackward,
       [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }},
      {"relu", ReluForward, ReluBackward, [](double x) { return x > 0 ? x : 0.0; }},
      {"relu6", Relu6Forward, Relu6Backward, [](double x) { return std::min(std::max(x, 0.0), 6.0); }},
      {"sigmoid", SigmoidForward, SigmoidBackward, [](double x) { return 1 / (1 + std::exp(-x)); }},
      {"tanh", TanhForward, TanhBackward, [](double x) { return std::tanh(x); }},
      {"silu", SiluForward, SiluBackward, [](double x) { return x / (1 + std::exp(-x)); }},
      {"softplus", SoftplusForward, SoftplusBackward,
       [](double x) { return x > 20 ? x : std::log1p(std::exp(x)); }},
      {"gelu_exact", GeluExactForward, GeluExactBackward,
       [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }},
  };
}

Vec Map(const Vec& x, const std::function<double(double)>& f) {
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = f(x[i]);
  return y;
}

TEST(ActivationTest, ForwardAndBackwardAgainstDoubleReference) {
  std::mt19937_64 rng(12);
  for (const Activation& a : All()) {
    for (const Shape& s : {Shape{1}, Shape{7}, Shape{3, 37}, Shape{2, 5, 131}}) {
      for (bool strided : {false, true}) {
        SCOPED_TRACE(a.name + " " + s.ToString() + (strided ? " strided" : ""));
        Tensor x = testing::RandomTensor(s, rng, -8.0f, 8.0f);
        // Keep finite differences away from the kinks at 0 and 6.
        float* xp = x.data<float>();
        for (int64_t i = 0; i < x.numel(); ++i)
          if (std::abs(xp[i]) < 1e-3f || std::abs(xp[i] - 6.0f) < 1e-3f) xp[i] += 0.01f;
        const Vec xv = ToDouble(x);
        Tensor dy = testing::RandomTensor(s, rng);
        if (strided) {
          x = testing::MakeStrided(x);
          dy = testing::MakeStrided(dy);
        }
        const Tensor y = testing::EmptyF32(s), dx = testing::EmptyF32(s);
        ASSERT_TRUE(a.forward(x, y).ok());
        ExpectClose(y, Map(xv, a.reference), 1e-6, 1e-7, "forward");
        ASSERT_TRUE(a.backward(x, dy, dx).ok());
        ExpectClose(dx, testing::NumericalGradient([&](const Vec& v) { return Map(v, a.reference); }, xv, ToDouble(dy)),
                    1e-5, 1e-6, "backward");
      }
    }
  }
}

TEST(ActivationTest, MatchesPyTorchIncludingKinks) {
  const SafetensorsFile f = testing::LoadFixture("activation");
  const Tensor x = f.Get("x").value();
  for (const Activation& a : All()) {
    SCOPED_TRACE(a.name);
    const Tensor y = testing::EmptyF32(x.shape()), dx = testing::EmptyF32(x.shape());
    ASSERT_TRUE(a.forward(x, y).ok());
    ASSERT_TRUE(a.backward(x, f.Get(a.name + ".dy").value(), dx).ok());
    ExpectClose(y, ToDouble(f.Get(a.name + ".y").value()), 1e-5, 1e-6, "y");
    ExpectClose(dx, ToDouble(f.Get(a.name + ".dx").value()), 1e-5, 1e-6, "dx");
  }
}

// SwiGLU against double references of both gradients (finite differences), on the vector path
// (contiguous, with a tail) and the strided one, then against PyTorch.
TEST(ActivationTest, SwiGluForwardAndBackward) {
  std::mt19937_64 rng(13);
  for (const bool strided : {false, true}) {
    SCOPED_TRACE(strided ? "strided" : "contiguous");
    Tensor g = testing::RandomTensor(Shape{3, 37}, rng, -12.0f, 12.0f);
    Tensor u = testing::RandomTensor(Shape{3, 37}, rng, -2.0f, 2.0f);
    if (strided) {
      g = testing::MakeStrided(g);
      u = testing::MakeStrided(u);
    }
    const Vec gv = ToDouble(g), uv = ToDouble(u);
    auto f = [&](const Vec& gx, const Vec& ux) {
      Vec y(gx.size());
      for (size_t i = 0; i < y.size(); ++i) y[i] = gx[i] / (1 + std::exp(-gx[i])) * ux[i];
      return y;
    };
    const Tensor y = testing::EmptyF32(g.shape());
    ASSERT_TRUE(SwiGluForward(g, u, y).ok());
    ExpectClose(y, f(gv, uv), 1e-5, 1e-6, "y");
    const Tensor dy = testing::RandomTensor(g.shape(), rng);
    const Tensor dg = testing::EmptyF32(g.shape()), du = testing::EmptyF32(g.shape());
    ASSERT_TRUE(SwiGluBackward(g, u, dy, dg, du).ok());
    ExpectClose(dg, testing::NumericalGradient([&](const Vec& x) { return f(x, uv); }, gv, ToDouble(dy)),
                1e-4, 1e-5, "dgate");
    ExpectClose(du, testing::NumericalGradient([&](const Vec& x) { return f(gv, x); }, uv, ToDouble(dy)),
                1e-4, 1e-5, "dup");
    // dup written over dout, dgate not wanted.
    const Tensor d2 = dy.Contiguous(DefaultCpuAllocator()).value();
    ASSERT_TRUE(SwiGluBackward(g, u, d2, Tensor(), d2).ok());
    ExpectClose(d2, ToDouble(du), 1e-6, 1e-7, "dup over dout");
  }
  const SafetensorsFile f = testing::LoadFixture("activation");
  const Tensor x = f.Get("x").value(), up = f.Get("swiglu.up").value();
  const Tensor y = testing::EmptyF32(x.shape()), dg = testing::EmptyF32(x.shape()),
               du = testing::EmptyF32(x.shape());
  ASSERT_TRUE(SwiGluForward(x, up, y).ok());
  ASSERT_TRUE(SwiGluBackward(x, up, f.Get("swiglu.dy").value(), dg, du).ok());
  ExpectClose(y, ToDouble(f.Get("swiglu.y").value()), 1e-5, 1e-6, "PyTorch y");
  ExpectClose(dg, ToDouble(f.Get("swiglu.dgate").value()), 1e-5, 1e-6, "PyTorch dgate");
  ExpectClose(du, ToDouble(f.Get("swiglu.dup").value()), 1e-5, 1e-6, "PyTorch dup");
  ExpectStatus(SwiGluForward(x, testing::EmptyF32(Shape{3}), y), absl::StatusCode::kInvalidArgument,
               {"SwiGluForward", "up"});
}

TEST(ActivationTest, Bf16StorageAndInPlace) {
  std::mt19937_64 rng(3);
  const Tensor x = testing::RandomTensor(Shape{4, 33}, rng, -4.0f, 4.0f);
  Tensor xb = Tensor::Empty(x.shape(), DType::kBF16, DefaultCpuAllocator()).value();
  ASSERT_TRUE(xb.CopyFrom(x).ok());
  const Vec xbv = ToDouble(xb);  // the bf16-rounded inputs
  const Tensor yb = Tensor::Empty(x.shape(), DType::kBF16, DefaultCpuAllocator()).value();
  ASSERT_TRUE(GeluForward(xb, yb).ok());
  ExpectClose(yb, Map(xbv, All()[0].reference), 1.0 / 128, 1e-3, "bf16 gelu (bf16 rounding)");
  const Tensor inplace = x.Contiguous(DefaultCpuAllocator()).value();
  ASSERT_TRUE(Relu6Forward(inplace, inplace).ok());
  EXPECT_EQ(ToDouble(inplace), Map(ToDouble(x), All()[2].reference)) << "in-place relu6";
}

// relu's and relu6's gradients from a u8 mask of x (Note [relu masks]): the same bits as from x,
// at the kinks too (PyTorch's fixture has x = 0 and x = 6), and NaN masked out as the x
// kernels do.
TEST(ActivationTest, MaskedBackwardIsTheGradientFromXBitForBit) {
  const SafetensorsFile f = testing::LoadFixture("activation");
  std::mt19937_64 rng(5);
  const Tensor random = testing::RandomTensor(Shape{7, 301}, rng, -8.0f, 8.0f);
  random.data<float>()[3] = 0.0f;
  random.data<float>()[4] = 6.0f;
  random.data<float>()[5] = std::nanf("");
  random.data<float>()[6] = -0.0f;
  for (const Tensor& x : {f.Get("x").value(), random}) {
    for (const auto& [name, upper] : {std::pair<std::string, float>{"relu", INFINITY},
                                      std::pair<std::string, float>{"relu6", 6.0f}}) {
      SCOPED_TRACE(name);
      const Tensor dy = x.numel() == random.numel()
                            ? testing::RandomTensor(x.shape(), rng)
                            : f.Get(name + ".dy").value();
      const Tensor mask = Tensor::Empty(x.shape(), DType::kU8, DefaultCpuAllocator()).value();
      ASSERT_TRUE(ReluMask(x, upper, mask).ok());
      const Tensor from_mask = testing::EmptyF32(x.shape()), from_x = testing::EmptyF32(x.shape());
      ASSERT_TRUE(MaskedBackward(mask, dy, from_mask).ok());
      ASSERT_TRUE((name == "relu" ? ReluBackward : Relu6Backward)(x, dy, from_x).ok());
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float xi = x.data<float>()[i];
        ASSERT_EQ(mask.data<uint8_t>()[i], xi > 0.0f && xi < upper ? 1 : 0) << i;
        ASSERT_EQ(from_mask.data<float>()[i], from_x.data<float>()[i]) << "x = " << xi;
      }
      if (x.numel() != random.numel()) {
        ExpectClose(from_mask, ToDouble(f.Get(name + ".dx").value()), 1e-5, 1e-6, "dx (PyTorch)");
      }
      // In place over dy, as the graph runs it.
      const Tensor inplace = dy.Contiguous(DefaultCpuAllocator()).value();
      ASSERT_TRUE(MaskedBackward(mask, inplace, inplace).ok());
      EXPECT_EQ(ToDouble(inplace), ToDouble(from_x));
    }
  }
  const Tensor x = f.Get("x").value();
  ExpectStatus(ReluMask(x, 6.0f, testing::EmptyF32(x.shape())), absl::StatusCode::kInvalidArgument,
               {"ReluMask", "mask", "u8"});
  const Tensor small = Tensor::Empty(Shape{2}, DType::kU8, DefaultCpuAllocator()).value();
  ExpectStatus(MaskedBackward(small, x, testing::EmptyF32(x.shape())),
               absl::StatusCode::kInvalidArgument, {"MaskedBackward", "mask", "[2]"});
}

TEST(ActivationTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor x = testing::RandomTensor(Shape{3, 4}, rng);
  ExpectStatus(GeluForward(x, testing::EmptyF32(Shape{4, 3})), absl::StatusCode::kInvalidArgument,
               {"GeluForward", "out", "[4, 3]", "[3, 4]"});
  ExpectStatus(ReluBackward(x, testing::FromDouble(Vec(12, 1.0), Shape{3, 4}, DType::kBF16),
                            testing::EmptyF32(Shape{3, 4})),
               absl::StatusCode::kInvalidArgument, {"dout", "bf16"});
  ExpectStatus(ReluForward(testing::FromDouble(Vec(2, 1.0), Shape{2}, DType::kI64),
                           testing::FromDouble(Vec(2, 1.0), Shape{2}, DType::kI64)),
               absl::StatusCode::kInvalidArgument, {"f32 or bf16"});
}

}  // namespace
}  // namespace strata::cpu
