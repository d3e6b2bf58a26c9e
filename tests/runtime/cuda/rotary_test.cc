// cuda::RotaryForward and cuda::RotaryBackward against the CPU kernels (in place too, a table
// longer than the sequence), and their argument errors.
#include "runtime/cuda/rotary.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/rotary.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

class RotaryCudaTest : public CudaKernelTest {};

TEST_F(RotaryCudaTest, ForwardAndBackwardMatchTheCpuKernel) {
  std::mt19937_64 rng(61);
  for (const Shape& shape : {Shape{1, 1, 1, 2}, Shape{2, 5, 3, 6}, Shape{3, 17, 4, 64},
                             Shape{1, 129, 7, 128}, Shape{2, 0, 3, 8}}) {
    SCOPED_TRACE(shape.ToString());
    Tensor table = EmptyF32(Shape{shape.dim(1) + 3, shape.dim(3)});
    cpu::RotaryScaling scaling;
    scaling.factor = 8;
    ASSERT_TRUE(cpu::RotaryTable(10000, scaling, table).ok());
    Tensor x = RandomTensor(shape, rng), y = EmptyF32(shape), dx = EmptyF32(shape);
    ASSERT_TRUE(cpu::RotaryForward(x, table, y).ok());
    ASSERT_TRUE(cpu::RotaryBackward(table, x, dx).ok());
    Tensor d_x = ToDevice(x), d_table = ToDevice(table), d_y = DeviceEmpty(shape);
    ASSERT_TRUE(RotaryForward(stream(), d_x, d_table, d_y).ok());
    ExpectRelativeError(ToHost(d_y), y, 1e-6, "forward");
    ASSERT_TRUE(RotaryBackward(stream(), d_table, d_x, d_y).ok());
    ExpectRelativeError(ToHost(d_y), dx, 1e-6, "backward");
    ASSERT_TRUE(RotaryForward(stream(), d_x, d_table, d_x).ok());
    ExpectRelativeError(ToHost(d_x), y, 1e-6, "forward in place");
    ASSERT_TRUE(RotaryBackward(stream(), d_table, d_x, d_x).ok());
    ExpectRelativeError(ToHost(d_x), x, 1e-5, "backward undoes forward");
  }
}

TEST(RotaryCudaChecks, RefuseHostTensorsAndWrongShapes) {
  testing::CudaTaggedViews on_cuda;
  const Tensor x = on_cuda(Shape{2, 4, 3, 8}), table = on_cuda(Shape{4, 8});
  ExpectStatus(RotaryForward(nullptr, EmptyF32(Shape{2, 4, 3, 8}), table, x),
               absl::StatusCode::kInvalidArgument, {"RotaryForward", "x", "not on a CUDA device"});
  const Tensor odd = on_cuda(Shape{2, 4, 3, 7});
  ExpectStatus(RotaryForward(nullptr, odd, table, odd),
               absl::StatusCode::kInvalidArgument, {"RotaryForward", "x", "D even"});
  ExpectStatus(RotaryForward(nullptr, x, on_cuda(Shape{3, 8}), x),
               absl::StatusCode::kInvalidArgument, {"RotaryForward", "table", "T >= 4"});
  ExpectStatus(RotaryBackward(nullptr, table, x, on_cuda(Shape{2, 4, 3, 8}, DType::kBF16)),
               absl::StatusCode::kInvalidArgument, {"RotaryBackward", "y"});
}

}  // namespace
}  // namespace strata::cuda
