// cuda::RmsNormForward and cuda::RmsNormBackward against the CPU kernels (both grad modes, dx over
// dy, the CPU backward fed the device's rstd), and their argument errors.
#include "runtime/cuda/rmsnorm.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/rmsnorm.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::CopyOf;
using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

class RmsNormCudaTest : public CudaKernelTest {
 protected:
  Tensor Workspace(const Shape& x) {
    return DeviceEmpty(
        Shape{static_cast<int64_t>(RmsNormBackwardWorkspaceBytes(x) / sizeof(float))});
  }
};

TEST_F(RmsNormCudaTest, ForwardAndBackwardMatchTheCpuKernel) {
  std::mt19937_64 rng(21);
  for (const Shape& shape : {Shape{1, 1}, Shape{3, 5}, Shape{7, 33}, Shape{2, 3, 100},
                             Shape{17, 257}, Shape{5, 1000}, Shape{3, 5000}, Shape{300, 64},
                             Shape{0, 8}}) {
    const int64_t c = shape.dim(-1), rows = shape.numel() / c;
    Tensor x = RandomTensor(shape, rng, -2.0f, 3.0f), gamma = RandomTensor(Shape{c}, rng);
    Tensor dy = RandomTensor(shape, rng);
    Tensor y = EmptyF32(shape), rstd = EmptyF32(Shape{rows});
    ASSERT_TRUE(cpu::RmsNormForward(x, gamma, 1e-6f, y, rstd).ok());
    Tensor d_x = ToDevice(x), d_gamma = ToDevice(gamma);
    Tensor d_y = DeviceEmpty(shape), d_rstd = DeviceEmpty(Shape{rows});
    ASSERT_TRUE(RmsNormForward(stream(), d_x, d_gamma, 1e-6f, d_y, d_rstd).ok());
    SCOPED_TRACE(shape.ToString());
    ExpectRelativeError(ToHost(d_y), y, 1e-5, "y");
    ExpectRelativeError(ToHost(d_rstd), rstd, 1e-5, "rstd");
    for (GradMode mode : {GradMode::kOverwrite, GradMode::kAccumulate}) {
      SCOPED_TRACE(mode == GradMode::kAccumulate ? "accumulate" : "overwrite");
      Tensor dg0 = RandomTensor(Shape{c}, rng);
      Tensor dx = EmptyF32(shape), dg = CopyOf(dg0);
      ASSERT_TRUE(cpu::RmsNormBackward(x, gamma, rstd, dy, dx, dg, mode).ok());
      Tensor d_dx = DeviceEmpty(shape), d_dg = ToDevice(dg0);
      ASSERT_TRUE(RmsNormBackward(stream(), d_x, d_gamma, ToDevice(rstd), ToDevice(dy), d_dx, d_dg,
                                  Workspace(shape), mode)
                      .ok());
      // Over one column dx is cancellation, 0 or nearly (the inputs are O(1)): measured against
      // the inputs' scale, since where the compiler fuses a multiply-add decides its last bits.
      ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "dx", c == 1 ? 1.0 : 0.0);
      ExpectRelativeError(ToHost(d_dg), dg, 1e-5, "dgamma");
    }
  }
}

TEST_F(RmsNormCudaTest, DxOverDyAndTheDeviceStatisticsOnTheCpu) {
  std::mt19937_64 rng(22);
  const Shape shape{41, 1500};
  Tensor x = RandomTensor(shape, rng), gamma = RandomTensor(Shape{1500}, rng);
  Tensor dy = RandomTensor(shape, rng);
  Tensor d_x = ToDevice(x), d_gamma = ToDevice(gamma);
  Tensor d_y = DeviceEmpty(shape), d_rstd = DeviceEmpty(Shape{41});
  ASSERT_TRUE(RmsNormForward(stream(), d_x, d_gamma, 1e-6f, d_y, d_rstd).ok());
  Tensor dx = EmptyF32(shape), dg = EmptyF32(Shape{1500});
  ASSERT_TRUE(cpu::RmsNormBackward(x, gamma, ToHost(d_rstd), dy, dx, dg).ok());
  Tensor d_dy = ToDevice(dy), d_dg = DeviceEmpty(Shape{1500});
  ASSERT_TRUE(
      RmsNormBackward(stream(), d_x, d_gamma, d_rstd, d_dy, d_dy, d_dg, Workspace(shape)).ok());
  ExpectRelativeError(ToHost(d_dy), dx, 1e-5, "dx over dy");
  ExpectRelativeError(ToHost(d_dg), dg, 1e-5, "dgamma");
}

TEST(RmsNormCudaChecks, RefuseHostTensorsWrongShapesAndSmallWorkspaces) {
  testing::CudaTaggedViews on_cuda;
  const Tensor x = on_cuda(Shape{4, 8}), g = on_cuda(Shape{8}), rstd = on_cuda(Shape{4});
  ExpectStatus(RmsNormForward(nullptr, EmptyF32(Shape{4, 8}), g, 1e-6f, x, rstd),
               absl::StatusCode::kInvalidArgument, {"RmsNormForward", "x", "not on a CUDA device"});
  ExpectStatus(RmsNormForward(nullptr, x, g, 1e-6f, x, on_cuda(Shape{3})),
               absl::StatusCode::kInvalidArgument, {"RmsNormForward", "rstd", "one per row"});
  ExpectStatus(RmsNormForward(nullptr, x, on_cuda(Shape{8}, DType::kBF16), 1e-6f, x, rstd),
               absl::StatusCode::kInvalidArgument, {"RmsNormForward", "gamma"});
  ExpectStatus(RmsNormForward(nullptr, x, g, 1e-6f, on_cuda(Shape{8, 4}), rstd),
               absl::StatusCode::kInvalidArgument, {"RmsNormForward", "y"});
  ExpectStatus(RmsNormBackward(nullptr, x, g, rstd, x, x, g, on_cuda(Shape{2})),
               absl::StatusCode::kInvalidArgument, {"RmsNormBackward", "workspace", "bytes"});
  ExpectStatus(RmsNormBackward(nullptr, x, g, rstd, x, EmptyF32(Shape{4, 8}), g, Tensor()),
               absl::StatusCode::kInvalidArgument, {"RmsNormBackward", "dx", "not on a CUDA"});
  ExpectStatus(RmsNormBackward(nullptr, x, g, rstd, x, x, g, Tensor()),
               absl::StatusCode::kInvalidArgument, {"RmsNormBackward", "workspace"});
}

}  // namespace
}  // namespace strata::cuda
