// cuda::GeluForward, ..., GeluExactBackward against the CPU kernels (runtime/cpu/activation.h) on
// the same inputs: f32 and bf16, contiguous and strided, sizes that are not multiples of a block
// and one larger than a full grid. ReLU and ReLU6 bit for bit; the others (expf, tanhf, log1pf,
// erfcf on the device) within 1e-5 (f32) or 1e-2 (bf16). The argument checks run without a device.
#include "runtime/cuda/activation.h"

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/activation.h"
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

struct Case {
  std::string name;
  std::function<absl::Status(const Tensor&, const Tensor&)> cpu_forward;
  std::function<absl::Status(CUstream_st*, const Tensor&, const Tensor&)> cuda_forward;
  std::function<absl::Status(const Tensor&, const Tensor&, const Tensor&)> cpu_backward;
  std::function<absl::Status(CUstream_st*, const Tensor&, const Tensor&, const Tensor&)>
      cuda_backward;
  bool exact;
  float range;  // inputs uniform in [-range, range)
};

std::vector<Case> Cases() {
  return {
      {"Gelu", cpu::GeluForward, GeluForward, cpu::GeluBackward, GeluBackward, false, 6.0f},
      {"Relu", cpu::ReluForward, ReluForward, cpu::ReluBackward, ReluBackward, true, 2.0f},
      {"Relu6", cpu::Relu6Forward, Relu6Forward, cpu::Relu6Backward, Relu6Backward, true, 9.0f},
      {"Sigmoid", cpu::SigmoidForward, SigmoidForward, cpu::SigmoidBackward, SigmoidBackward,
       false, 12.0f},
      {"Tanh", cpu::TanhForward, TanhForward, cpu::TanhBackward, TanhBackward, false, 4.0f},
      {"Silu", cpu::SiluForward, SiluForward, cpu::SiluBackward, SiluBackward, false, 8.0f},
      {"Softplus", cpu::SoftplusForward, SoftplusForward, cpu::SoftplusBackward, SoftplusBackward,
       false, 25.0f},
      {"GeluExact", cpu::GeluExactForward, GeluExactForward, cpu::GeluExactBackward,
       GeluExactBackward, false, 6.0f},
  };
}

const std::vector<Shape>& Shapes() {
  static const std::vector<Shape> shapes = {Shape{0},        Shape{1},       Shape{7},
                                            Shape{3, 257},   Shape{129, 33}, Shape{2, 3, 5},
                                            Shape{(1 << 20) + 37}};
  return shapes;
}

class ActivationCudaTest : public testing::StridedCudaTest {
 protected:
  void Compare(const Tensor& got, const Tensor& want, bool exact, const std::string& what) {
    if (exact) {
      ExpectBitwiseEqual(got, want, what);
    } else {
      ExpectRelativeError(got, want, want.dtype() == DType::kF32 ? 1e-5 : 1e-2, what);
    }
  }
};

TEST_F(ActivationCudaTest, ForwardAndBackwardMatchTheCpu) {
  std::mt19937_64 rng(21);
  for (const Case& c : Cases()) {
    for (const Shape& shape : Shapes()) {
      for (DType dtype : {DType::kF32, DType::kBF16}) {
        for (bool strided : {false, true}) {
          if (strided && shape.rank() != 2) continue;
          const std::string what = absl::StrCat(c.name, " ", shape.ToString(), " ",
                                                DTypeName(dtype), strided ? " strided" : "");
          Tensor x = HostAs(RandomTensor(shape, rng, -c.range, c.range), dtype);
          if (x.numel() > 2) {  // the kinks and thresholds themselves
            const double at[] = {0.0, 6.0, 20.0};
            for (int k = 0; k < 3; ++k) {
              const Tensor e = x.Reshape({-1}).value().Slice(0, k, k + 1).value();
              ASSERT_TRUE(e.Fill(at[k]).ok());
            }
          }
          const Tensor dout = HostAs(RandomTensor(shape, rng), dtype);
          const Tensor want_y = HostAs(EmptyF32(shape), dtype);
          const Tensor want_dx = HostAs(EmptyF32(shape), dtype);
          ASSERT_TRUE(c.cpu_forward(x, want_y).ok()) << what;
          ASSERT_TRUE(c.cpu_backward(x, dout, want_dx).ok()) << what;

          const Tensor dev_x = Upload(x, strided), dev_dout = Upload(dout, strided);
          const Tensor y = OutputLike(shape, dtype, strided);
          const Tensor dx = OutputLike(shape, dtype, strided);
          ASSERT_TRUE(c.cuda_forward(stream(), dev_x, y).ok()) << what;
          ASSERT_TRUE(c.cuda_backward(stream(), dev_x, dev_dout, dx).ok()) << what;
          Compare(Download(y), want_y, c.exact, what + " forward");
          Compare(Download(dx), want_dx, c.exact, what + " backward");
        }
      }
    }
  }
}

TEST_F(ActivationCudaTest, InPlaceForward) {
  std::mt19937_64 rng(22);
  const Tensor x = RandomTensor(Shape{33, 65}, rng, -8.0f, 8.0f);
  const Tensor want = EmptyF32(x.shape());
  ASSERT_TRUE(cpu::Relu6Forward(x, want).ok());
  const Tensor dev = ToDevice(x);
  ASSERT_TRUE(Relu6Forward(stream(), dev, dev).ok());
  ExpectBitwiseEqual(ToHost(dev), want, "in-place Relu6Forward");
}

TEST_F(ActivationCudaTest, SwiGluForwardAndBackward) {
  std::mt19937_64 rng(23);
  for (const Shape& shape : {Shape{1}, Shape{5, 3}, Shape{257, 129}, Shape{(1 << 20) + 5}}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      const bool strided = shape.rank() == 2;
      const std::string what = absl::StrCat("SwiGlu ", shape.ToString(), " ", DTypeName(dtype));
      const double tol = dtype == DType::kF32 ? 1e-5 : 1e-2;
      const Tensor gate = HostAs(RandomTensor(shape, rng, -8.0f, 8.0f), dtype);
      const Tensor up = HostAs(RandomTensor(shape, rng), dtype);
      const Tensor dout = HostAs(RandomTensor(shape, rng), dtype);
      const Tensor want = HostAs(EmptyF32(shape), dtype);
      const Tensor want_dgate = HostAs(EmptyF32(shape), dtype);
      const Tensor want_dup = HostAs(EmptyF32(shape), dtype);
      ASSERT_TRUE(cpu::SwiGluForward(gate, up, want).ok());
      ASSERT_TRUE(cpu::SwiGluBackward(gate, up, dout, want_dgate, want_dup).ok());

      const Tensor dg = Upload(gate, strided), du = Upload(up, strided);
      const Tensor out = OutputLike(shape, dtype, strided);
      ASSERT_TRUE(SwiGluForward(stream(), dg, du, out).ok()) << what;
      ExpectRelativeError(Download(out), want, tol, what + " forward");

      // Both gradients, dup aliasing dout (dgate must read dout first).
      const Tensor dd = ToDevice(dout);
      const Tensor dgate = DeviceEmpty(shape, dtype);
      ASSERT_TRUE(SwiGluBackward(stream(), ToDevice(gate), ToDevice(up), dd, dgate, dd).ok());
      ExpectRelativeError(ToHost(dgate), want_dgate, tol, what + " dgate");
      ExpectRelativeError(ToHost(dd), want_dup, tol, what + " dup (in dout's place)");

      // One at a time.
      const Tensor only_dup = DeviceEmpty(shape, dtype);
      ASSERT_TRUE(SwiGluBackward(stream(), dg, du, ToDevice(dout), Tensor(), only_dup).ok());
      ExpectRelativeError(ToHost(only_dup), want_dup, tol, what + " dup alone");
      const Tensor only_dgate = DeviceEmpty(shape, dtype);
      ASSERT_TRUE(SwiGluBackward(stream(), dg, du, ToDevice(dout), only_dgate, Tensor()).ok());
      ExpectRelativeError(ToHost(only_dgate), want_dgate, tol, what + " dgate alone");
    }
  }
}

// The launchers check their arguments before they touch the device, so these run anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(ActivationCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  std::vector<float> bytes(64);
  const Tensor host = EmptyF32(Shape{4, 3});
  const Tensor a = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kF32, Device::Cuda(0));
  const Tensor b = Tensor::Wrap(bytes.data(), Shape{3, 4}, DType::kF32, Device::Cuda(0));
  const Tensor ints = Tensor::Wrap(bytes.data(), Shape{4, 3}, DType::kI32, Device::Cuda(0));
  ExpectStatus(GeluForward(nullptr, host, a), absl::StatusCode::kInvalidArgument,
               {"GeluForward", "x", "not on a CUDA device"});
  ExpectStatus(ReluBackward(nullptr, a, b, a), absl::StatusCode::kInvalidArgument,
               {"ReluBackward", "dout", "[3, 4]"});
  ExpectStatus(TanhForward(nullptr, ints, ints), absl::StatusCode::kInvalidArgument,
               {"TanhForward", "x", "expected f32 or bf16"});
  ExpectStatus(SiluBackward(nullptr, a, a, host), absl::StatusCode::kInvalidArgument,
               {"SiluBackward", "dx", "not on a CUDA device"});
  ExpectStatus(SwiGluForward(nullptr, a, b, a), absl::StatusCode::kInvalidArgument,
               {"SwiGluForward", "up"});
  ExpectStatus(SwiGluBackward(nullptr, a, a, a, b, Tensor()), absl::StatusCode::kInvalidArgument,
               {"SwiGluBackward", "dgate"});
  ExpectStatus(SwiGluBackward(nullptr, a, a, a, Tensor(), host),
               absl::StatusCode::kInvalidArgument,
               {"SwiGluBackward", "dup", "not on a CUDA device"});
  ExpectStatus(SoftplusForward(nullptr, a, Tensor()), absl::StatusCode::kInvalidArgument,
               {"SoftplusForward", "out"});
}

}  // namespace
}  // namespace strata::cuda
