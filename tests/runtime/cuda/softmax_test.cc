// cuda::SoftmaxForward/Backward and cuda::LogSoftmaxForward/Backward against the CPU kernels
// (in place too, masked -inf entries, rows longer than a block), and their argument errors.
#include "runtime/cuda/softmax.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/softmax.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

class SoftmaxCudaTest : public CudaKernelTest {};

const std::vector<Shape>& Shapes() {
  static const std::vector<Shape> shapes = {Shape{1},      Shape{1, 1},     Shape{3, 5},
                                            Shape{7, 33},  Shape{2, 3, 100}, Shape{17, 257},
                                            Shape{4, 3001}, Shape{2, 50257}, Shape{500, 16},
                                            Shape{0, 8},   Shape{3, 0}};
  return shapes;
}

// Scores in [-8, 8] with a few -inf (masked) entries, never a whole row.
Tensor Scores(const Shape& shape, std::mt19937_64& rng) {
  Tensor x = RandomTensor(shape, rng, -8.0f, 8.0f);
  float* p = x.data<float>();
  for (int64_t i = 1; i < x.numel(); i += 7) p[i] = -INFINITY;
  return x;
}

TEST_F(SoftmaxCudaTest, SoftmaxMatchesTheCpuKernel) {
  std::mt19937_64 rng(31);
  for (const Shape& shape : Shapes()) {
    SCOPED_TRACE(shape.ToString());
    Tensor x = Scores(shape, rng), dy = RandomTensor(shape, rng);
    Tensor y = EmptyF32(shape), dx = EmptyF32(shape);
    ASSERT_TRUE(cpu::SoftmaxForward(x, y).ok());
    ASSERT_TRUE(cpu::SoftmaxBackward(y, dy, dx).ok());
    Tensor d_x = ToDevice(x), d_y = DeviceEmpty(shape), d_dx = DeviceEmpty(shape);
    ASSERT_TRUE(SoftmaxForward(stream(), d_x, d_y).ok());
    ExpectRelativeError(ToHost(d_y), y, 1e-5, "softmax");
    Tensor d_ycpu = ToDevice(y), d_dy = ToDevice(dy);
    ASSERT_TRUE(SoftmaxBackward(stream(), d_ycpu, d_dy, d_dx).ok());
    ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "softmax backward");
    // In place: out over x, dx over dy.
    ASSERT_TRUE(SoftmaxForward(stream(), d_x, d_x).ok());
    ExpectRelativeError(ToHost(d_x), y, 1e-5, "softmax in place");
    ASSERT_TRUE(SoftmaxBackward(stream(), d_ycpu, d_dy, d_dy).ok());
    ExpectRelativeError(ToHost(d_dy), dx, 1e-5, "softmax backward in place");
  }
}

TEST_F(SoftmaxCudaTest, LogSoftmaxMatchesTheCpuKernel) {
  std::mt19937_64 rng(32);
  for (const Shape& shape : Shapes()) {
    SCOPED_TRACE(shape.ToString());
    Tensor x = RandomTensor(shape, rng, -8.0f, 8.0f), dy = RandomTensor(shape, rng);
    Tensor y = EmptyF32(shape), dx = EmptyF32(shape);
    ASSERT_TRUE(cpu::LogSoftmaxForward(x, y).ok());
    ASSERT_TRUE(cpu::LogSoftmaxBackward(y, dy, dx).ok());
    Tensor d_x = ToDevice(x), d_y = DeviceEmpty(shape), d_dx = DeviceEmpty(shape);
    ASSERT_TRUE(LogSoftmaxForward(stream(), d_x, d_y).ok());
    ExpectRelativeError(ToHost(d_y), y, 1e-5, "log-softmax");
    Tensor d_ycpu = ToDevice(y), d_dy = ToDevice(dy);
    ASSERT_TRUE(LogSoftmaxBackward(stream(), d_ycpu, d_dy, d_dx).ok());
    ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "log-softmax backward");
    ASSERT_TRUE(LogSoftmaxForward(stream(), d_x, d_x).ok());
    ExpectRelativeError(ToHost(d_x), y, 1e-5, "log-softmax in place");
    ASSERT_TRUE(LogSoftmaxBackward(stream(), d_ycpu, d_dy, d_dy).ok());
    ExpectRelativeError(ToHost(d_dy), dx, 1e-5, "log-softmax backward in place");
  }
}

// An all -inf row: log-softmax gives NaN on both. (Softmax is left out: the CPU kernel's
// vectorized exp clamps its input at -87.3, so where it is used an all -inf row comes out
// uniform rather than NaN; the device gives NaN, as PyTorch.)
TEST_F(SoftmaxCudaTest, AnAllMinusInfinityRowGivesNaNLogSoftmaxAsOnTheCpu) {
  Tensor x = EmptyF32(Shape{2, 40});
  for (int64_t i = 0; i < 80; ++i) x.data<float>()[i] = i < 40 ? -INFINITY : 0.01f * i;
  Tensor ly = EmptyF32(x.shape());
  ASSERT_TRUE(cpu::LogSoftmaxForward(x, ly).ok());
  Tensor d_ly = DeviceEmpty(x.shape());
  ASSERT_TRUE(LogSoftmaxForward(stream(), ToDevice(x), d_ly).ok());
  ExpectRelativeError(ToHost(d_ly), ly, 1e-5, "log-softmax");
}

TEST(SoftmaxCudaChecks, RefuseHostTensorsShapeMismatchesAndScalars) {
  testing::CudaTaggedViews on_cuda;
  const Tensor x = on_cuda(Shape{4, 8});
  ExpectStatus(SoftmaxForward(nullptr, EmptyF32(Shape{4, 8}), x),
               absl::StatusCode::kInvalidArgument, {"SoftmaxForward", "x", "not on a CUDA device"});
  ExpectStatus(SoftmaxForward(nullptr, x, on_cuda(Shape{8, 4})),
               absl::StatusCode::kInvalidArgument, {"SoftmaxForward", "out"});
  ExpectStatus(SoftmaxBackward(nullptr, x, on_cuda(Shape{4, 8}, DType::kBF16), x),
               absl::StatusCode::kInvalidArgument, {"SoftmaxBackward", "dy"});
  ExpectStatus(LogSoftmaxForward(nullptr, on_cuda(Shape{}), on_cuda(Shape{})),
               absl::StatusCode::kInvalidArgument, {"LogSoftmaxForward", "x", "scalar"});
  ExpectStatus(LogSoftmaxBackward(nullptr, x, x, EmptyF32(Shape{4, 8})),
               absl::StatusCode::kInvalidArgument, {"LogSoftmaxBackward", "dx", "not on a CUDA"});
}

}  // namespace
}  // namespace strata::cuda
