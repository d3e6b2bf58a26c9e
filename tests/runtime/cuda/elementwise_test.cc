// cuda::Add, ..., BiasGrad against the CPU kernels (runtime/cpu/elementwise.h) on the same inputs:
// f32 and bf16, contiguous and strided, sizes that are not multiples of a block and one larger
// than a full grid; bit for bit where both sides round the same operations (all but exp, log, pow,
// the column sums, and the multiply-adds, which the CPU fuses only when built for an FMA
// machine), else within 1e-5 (f32) or 1e-2 (bf16). The argument checks and the views' offsets
// run without a device.
#include "runtime/cuda/elementwise.h"

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/elementwise.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"
#include "tests/runtime/cuda/elementwise_test_util.h"

namespace strata::cuda {
namespace {

using testing::EmptyF32;
using testing::ExpectBitwiseEqual;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::HostAs;
using testing::RandomTensor;

using CpuBinary = std::function<absl::Status(const Tensor&, const Tensor&, const Tensor&)>;
using CudaBinary =
    std::function<absl::Status(CUstream_st*, const Tensor&, const Tensor&, const Tensor&)>;
using CpuUnary = std::function<absl::Status(const Tensor&, const Tensor&)>;
using CudaUnary = std::function<absl::Status(CUstream_st*, const Tensor&, const Tensor&)>;

struct BinaryCase {
  std::string name;
  CpuBinary cpu;
  CudaBinary cuda;
  bool exact;  // else (a fused multiply-add on one side only) within 1e-6 of the CPU's
};

struct UnaryCase {
  std::string name;
  CpuUnary cpu;
  CudaUnary cuda;
  bool exact;
  float lo, hi;  // the inputs' range
};

std::vector<BinaryCase> BinaryCases() {
  return {
      {"Add", cpu::Add, Add, true},
      {"Sub", cpu::Sub, Sub, true},
      {"Mul", cpu::Mul, Mul, true},
      {"Div", cpu::Div, Div, true},
      {"AddScaled",
       [](const Tensor& a, const Tensor& b, const Tensor& o) {
         return cpu::AddScaled(a, b, -0.37f, o);
       },
       [](CUstream_st* s, const Tensor& a, const Tensor& b, const Tensor& o) {
         return AddScaled(s, a, b, -0.37f, o);
       },
       false},
  };
}

std::vector<UnaryCase> UnaryCases() {
  return {
      {"Scale", [](const Tensor& x, const Tensor& o) { return cpu::Scale(x, 1.7f, o); },
       [](CUstream_st* s, const Tensor& x, const Tensor& o) { return Scale(s, x, 1.7f, o); },
       true, -3.0f, 3.0f},
      {"ScaleShift",
       [](const Tensor& x, const Tensor& o) { return cpu::ScaleShift(x, 0.3f, -1.1f, o); },
       [](CUstream_st* s, const Tensor& x, const Tensor& o) {
         return ScaleShift(s, x, 0.3f, -1.1f, o);
       },
       false, -3.0f, 3.0f},
      {"Pow2", [](const Tensor& x, const Tensor& o) { return cpu::Pow(x, 2.0f, o); },
       [](CUstream_st* s, const Tensor& x, const Tensor& o) { return Pow(s, x, 2.0f, o); }, true,
       -3.0f, 3.0f},
      {"Pow1.5", [](const Tensor& x, const Tensor& o) { return cpu::Pow(x, 1.5f, o); },
       [](CUstream_st* s, const Tensor& x, const Tensor& o) { return Pow(s, x, 1.5f, o); }, false,
       0.01f, 4.0f},
      {"Exp", cpu::Exp, Exp, false, -4.0f, 4.0f},
      {"Log", cpu::Log, Log, false, 0.01f, 8.0f},
      {"Sqrt", cpu::Sqrt, Sqrt, true, 0.0f, 8.0f},
      {"Rsqrt", cpu::Rsqrt, Rsqrt, true, 0.01f, 8.0f},
  };
}

// Shapes: rank 2 ones are also tried as strided views.
const std::vector<Shape>& Shapes() {
  static const std::vector<Shape> shapes = {Shape{0},      Shape{1},        Shape{7},
                                            Shape{3, 257}, Shape{129, 33},  Shape{1, 5},
                                            Shape{2, 3, 5}, Shape{(1 << 20) + 37}};
  return shapes;
}

class ElementwiseCudaTest : public testing::StridedCudaTest {};

TEST_F(ElementwiseCudaTest, BinaryOpsMatchTheCpu) {
  std::mt19937_64 rng(11);
  for (const BinaryCase& c : BinaryCases()) {
    for (const Shape& shape : Shapes()) {
      for (DType dtype : {DType::kF32, DType::kBF16}) {
        for (bool strided : {false, true}) {
          if (strided && shape.rank() != 2) continue;
          const std::string what = absl::StrCat(c.name, " ", shape.ToString(), " ",
                                                DTypeName(dtype), strided ? " strided" : "");
          const Tensor a = HostAs(RandomTensor(shape, rng, -2.0f, 2.0f), dtype);
          const Tensor b = HostAs(RandomTensor(shape, rng, 0.25f, 2.0f), dtype);
          const Tensor want = HostAs(EmptyF32(shape), dtype);
          ASSERT_TRUE(c.cpu(a, b, want).ok()) << what;
          const Tensor da = Upload(a, strided), db = Upload(b, strided);
          const Tensor out = OutputLike(shape, dtype, strided);
          ASSERT_TRUE(c.cuda(stream(), da, db, out).ok()) << what;
          if (c.exact) {
            ExpectBitwiseEqual(Download(out), want, what);
          } else {
            ExpectRelativeError(Download(out), want, dtype == DType::kF32 ? 1e-6 : 1e-2, what);
          }
        }
      }
    }
  }
}

TEST_F(ElementwiseCudaTest, UnaryOpsMatchTheCpu) {
  std::mt19937_64 rng(12);
  for (const UnaryCase& c : UnaryCases()) {
    for (const Shape& shape : Shapes()) {
      for (DType dtype : {DType::kF32, DType::kBF16}) {
        for (bool strided : {false, true}) {
          if (strided && shape.rank() != 2) continue;
          const std::string what = absl::StrCat(c.name, " ", shape.ToString(), " ",
                                                DTypeName(dtype), strided ? " strided" : "");
          const Tensor x = HostAs(RandomTensor(shape, rng, c.lo, c.hi), dtype);
          const Tensor want = HostAs(EmptyF32(shape), dtype);
          ASSERT_TRUE(c.cpu(x, want).ok()) << what;
          const Tensor dx = Upload(x, strided);
          const Tensor out = OutputLike(shape, dtype, strided);
          ASSERT_TRUE(c.cuda(stream(), dx, out).ok()) << what;
          if (c.exact) {
            ExpectBitwiseEqual(Download(out), want, what);
          } else {
            ExpectRelativeError(Download(out), want, dtype == DType::kF32 ? 1e-5 : 1e-2, what);
          }
        }
      }
    }
  }
}

TEST_F(ElementwiseCudaTest, SpecialValuesOfDivLogSqrtRsqrt) {
  const Tensor a = testing::FromDouble({1.0, -1.0, 0.0, 2.0, -0.0, 4.0}, Shape{6});
  const Tensor b = testing::FromDouble({0.0, 0.0, 0.0, -0.0, 1.0, -2.0}, Shape{6});
  const Tensor want = EmptyF32(Shape{6});
  ASSERT_TRUE(cpu::Div(a, b, want).ok());
  const Tensor out = DeviceEmpty(Shape{6});
  ASSERT_TRUE(Div(stream(), ToDevice(a), ToDevice(b), out).ok());
  ExpectBitwiseEqual(ToHost(out), want, "Div by zero");
  for (const UnaryCase& c : UnaryCases()) {
    if (c.name != "Log" && c.name != "Sqrt" && c.name != "Rsqrt") continue;
    const Tensor w = EmptyF32(Shape{6});
    ASSERT_TRUE(c.cpu(a, w).ok());
    const Tensor o = DeviceEmpty(Shape{6});
    ASSERT_TRUE(c.cuda(stream(), ToDevice(a), o).ok());
    ExpectRelativeError(ToHost(o), w, 1e-6, c.name + " at 0, -0 and below");
  }
}

TEST_F(ElementwiseCudaTest, InPlaceAddAndMulBackward) {
  std::mt19937_64 rng(13);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const Shape shape{37, 211};
    const Tensor a = HostAs(RandomTensor(shape, rng), dtype);
    const Tensor b = HostAs(RandomTensor(shape, rng), dtype);
    const Tensor dout = HostAs(RandomTensor(shape, rng), dtype);
    // x += b in place.
    const Tensor want = HostAs(a, dtype);
    ASSERT_TRUE(cpu::Add(want, b, want).ok());
    const Tensor x = ToDevice(a);
    ASSERT_TRUE(Add(stream(), x, ToDevice(b), x).ok());
    ExpectBitwiseEqual(ToHost(x), want, "in-place Add");

    // da and db, then da alone, with da aliasing a (db must read a first).
    const Tensor want_db = HostAs(b, dtype);
    const Tensor ha = HostAs(a, dtype);
    ASSERT_TRUE(cpu::MulBackward(ha, b, dout, ha, want_db).ok());
    const Tensor d_a = ToDevice(a), d_db = DeviceEmpty(shape, dtype);
    ASSERT_TRUE(MulBackward(stream(), d_a, ToDevice(b), ToDevice(dout), d_a, d_db).ok());
    ExpectBitwiseEqual(ToHost(d_a), ha, "MulBackward da (aliasing a)");
    ExpectBitwiseEqual(ToHost(d_db), want_db, "MulBackward db");
    const Tensor only = HostAs(a, dtype);
    ASSERT_TRUE(cpu::MulBackward(a, b, dout, only, Tensor()).ok());
    const Tensor d_only = DeviceEmpty(shape, dtype);
    ASSERT_TRUE(
        MulBackward(stream(), ToDevice(a), ToDevice(b), ToDevice(dout), d_only, Tensor()).ok());
    ExpectBitwiseEqual(ToHost(d_only), only, "MulBackward da alone");
  }
}

TEST_F(ElementwiseCudaTest, AddBiasAndBroadcastRowsMatchBitForBit) {
  std::mt19937_64 rng(14);
  for (const Shape& shape : {Shape{1}, Shape{5, 3}, Shape{300, 257}, Shape{2, 3, 1000},
                             Shape{0, 4}, Shape{4100, 300}}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      const std::string what = absl::StrCat(shape.ToString(), " ", DTypeName(dtype));
      const Shape bias_shape{shape.dim(-1)};
      const Tensor x = HostAs(RandomTensor(shape, rng), dtype);
      const Tensor bias = HostAs(RandomTensor(bias_shape, rng), dtype);
      const Tensor want = HostAs(EmptyF32(shape), dtype);
      ASSERT_TRUE(cpu::AddBias(x, bias, want).ok()) << what;
      const Tensor out = OutputLike(shape, dtype, false);
      ASSERT_TRUE(AddBias(stream(), Upload(x, false), ToDevice(bias), out).ok()) << what;
      ExpectBitwiseEqual(Download(out), want, "AddBias " + what);

      const Tensor want_rows = HostAs(EmptyF32(shape), dtype);
      ASSERT_TRUE(cpu::BroadcastRows(bias, want_rows).ok()) << what;
      const Tensor rows = OutputLike(shape, dtype, false);
      ASSERT_TRUE(BroadcastRows(stream(), ToDevice(bias), rows).ok()) << what;
      ExpectBitwiseEqual(Download(rows), want_rows, "BroadcastRows " + what);
    }
  }
}

TEST_F(ElementwiseCudaTest, BiasGradOverwritesAndAccumulates) {
  std::mt19937_64 rng(15);
  for (const Shape& shape : {Shape{1, 1}, Shape{3, 5}, Shape{1000, 33}, Shape{7, 3000},
                             Shape{2, 513, 64}, Shape{0, 6}, Shape{20000, 3}}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      for (cpu::GradMode mode : {cpu::GradMode::kOverwrite, cpu::GradMode::kAccumulate}) {
        const std::string what =
            absl::StrCat("BiasGrad ", shape.ToString(), " ", DTypeName(dtype),
                         mode == cpu::GradMode::kAccumulate ? " accumulate" : "");
        const Tensor dout = HostAs(RandomTensor(shape, rng), dtype);
        const Tensor start = HostAs(RandomTensor(Shape{shape.dim(-1)}, rng), dtype);
        const Tensor want = HostAs(start, dtype);
        ASSERT_TRUE(cpu::BiasGrad(dout, want, mode).ok()) << what;
        const Tensor db = ToDevice(start);
        ASSERT_TRUE(BiasGrad(stream(), Upload(dout, false), db, mode).ok()) << what;
        ExpectRelativeError(ToHost(db), want, dtype == DType::kF32 ? 1e-5 : 1e-2, what);
      }
    }
  }
}

// The launchers check their arguments before they touch the device, so these run anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(ElementwiseCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  std::vector<float> bytes(1024);
  const Tensor host = EmptyF32(Shape{4, 3});
  const Tensor a = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kF32, Device::Cuda(0));
  const Tensor b = Tensor::Wrap(bytes.data(), Shape{3, 4}, DType::kF32, Device::Cuda(0));
  const Tensor ints = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kI32, Device::Cuda(0));
  const Tensor half = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kBF16, Device::Cuda(0));
  ExpectStatus(Add(nullptr, a, host, a), absl::StatusCode::kInvalidArgument,
               {"Add", "b", "not on a CUDA device"});
  ExpectStatus(Mul(nullptr, a, a, b), absl::StatusCode::kInvalidArgument, {"Mul", "out", "[3, 4]"});
  ExpectStatus(Exp(nullptr, ints, ints), absl::StatusCode::kInvalidArgument,
               {"Exp", "x", "expected f32 or bf16"});
  ExpectStatus(Sub(nullptr, a, half, a), absl::StatusCode::kInvalidArgument, {"Sub", "b", "bf16"});
  ExpectStatus(Scale(nullptr, a, 2.0f, Tensor()), absl::StatusCode::kInvalidArgument,
               {"Scale", "out"});
  ExpectStatus(MulBackward(nullptr, a, a, a, b, Tensor()), absl::StatusCode::kInvalidArgument,
               {"MulBackward", "da"});
  ExpectStatus(MulBackward(nullptr, a, a, a, Tensor(), host), absl::StatusCode::kInvalidArgument,
               {"MulBackward", "db", "not on a CUDA device"});

  const Tensor bias = Tensor::Wrap(bytes.data(), Shape{3}, DType::kF32, Device::Cuda(0));
  const Tensor bias4 = Tensor::Wrap(bytes.data(), Shape{4}, DType::kF32, Device::Cuda(0));
  const Tensor host_bias = EmptyF32(Shape{3});
  ExpectStatus(AddBias(nullptr, a, bias4, a), absl::StatusCode::kInvalidArgument,
               {"AddBias", "bias", "f32[3]"});
  ExpectStatus(AddBias(nullptr, a, host_bias, a), absl::StatusCode::kInvalidArgument,
               {"AddBias", "bias", "not on a CUDA device"});
  ExpectStatus(BroadcastRows(nullptr, bias4, a), absl::StatusCode::kInvalidArgument,
               {"BroadcastRows", "x"});
  ExpectStatus(BiasGrad(nullptr, a, bias4), absl::StatusCode::kInvalidArgument,
               {"BiasGrad", "dbias"});
  ExpectStatus(BiasGrad(nullptr, b.Transpose(0, 1).value(), bias),
               absl::StatusCode::kInvalidArgument,
               {"BiasGrad", "dout", "contiguous"});
}

// ViewOf's merged sizes and strides, walked as the kernels' ViewOffset walks them, give every
// element's true offset, for views that merge, drop size-1 dimensions, or reorder.
TEST(ElementwiseCudaChecks, ViewsAddressEveryElementWhereTheTensorDoes) {
  std::vector<float> bytes(4096);
  const Tensor base = Tensor::Wrap(bytes.data(), Shape{4, 1, 6, 5, 2, 3}, DType::kF32,
                                   Device::Cuda(0));
  const std::vector<Tensor> views = {
      base,
      base.Permute({0, 1, 3, 2, 4, 5}).value(),
      base.Permute({5, 4, 3, 2, 1, 0}).value(),
      base.Slice(2, 1, 5).value(),
      base.Slice(3, 0, 5, 2).value().Transpose(0, 4).value(),
      base.Select(2, 3).value().Permute({1, 0, 3, 4, 2}).value(),
  };
  for (const Tensor& v : views) {
    const absl::StatusOr<internal::StridedView> sv = internal::ViewOf("test", "v", v);
    ASSERT_TRUE(sv.ok()) << sv.status();
    ASSERT_EQ(sv->contiguous, v.is_contiguous()) << v.ToString();
    const int64_t base_offset =
        (static_cast<const float*>(sv->data) - static_cast<const float*>(base.raw_data()));
    EXPECT_EQ(base_offset, v.offset()) << v.ToString();
    for (int64_t flat = 0; flat < v.numel(); ++flat) {
      int64_t want = 0, rest = flat;
      for (int d = v.rank() - 1; d >= 0; --d) {
        want += (rest % v.dim(d)) * v.stride(d);
        rest /= v.dim(d);
      }
      int64_t got = 0;
      if (sv->contiguous) {
        got = flat;
      } else {
        rest = flat;
        for (int d = sv->rank - 1; d >= 0; --d) {
          got += (rest % sv->size[d]) * sv->stride[d];
          rest /= sv->size[d];
        }
      }
      ASSERT_EQ(got, want) << v.ToString() << " element " << flat;
    }
  }
}

TEST(ElementwiseCudaChecks, RefuseViewsOfMoreThanEightDimensions) {
  std::vector<float> bytes(512);
  const Tensor t = Tensor::Wrap(bytes.data(), Shape{2, 2, 2, 2, 2, 2, 2, 2, 2}, DType::kF32,
                                Device::Cuda(0));
  const Tensor reversed = t.Permute({8, 7, 6, 5, 4, 3, 2, 1, 0}).value();
  ExpectStatus(Exp(nullptr, reversed, reversed), absl::StatusCode::kInvalidArgument,
               {"Exp", "x", "more than 8"});
}

}  // namespace
}  // namespace strata::cuda
