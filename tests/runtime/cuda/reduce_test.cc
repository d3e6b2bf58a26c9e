// cuda::SumDim, MaxDim, MaxDimBackward and BroadcastDim against the CPU kernels over every
// dimension of several shapes (ties and NaN for the maximum), and their argument errors.
#include "runtime/cuda/reduce.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/reduce.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

Shape Without(const Shape& s, int dim) {
  Dims dims;
  for (int i = 0; i < s.rank(); ++i) {
    if (i != dim) dims.push_back(s.dim(i));
  }
  return Shape(dims);
}

class ReduceCudaTest : public CudaKernelTest {};

TEST_F(ReduceCudaTest, MatchesTheCpuKernelsAlongEveryDimension) {
  std::mt19937_64 rng(71);
  for (const Shape& shape : {Shape{1}, Shape{7}, Shape{3, 5}, Shape{4, 3001}, Shape{2, 3, 100},
                             Shape{5, 1, 33}, Shape{300, 17}, Shape{2, 0, 3}}) {
    for (int dim = 0; dim < shape.rank(); ++dim) {
      SCOPED_TRACE(shape.ToString() + " dim " + std::to_string(dim));
      // Values on a coarse grid, so the maximum has ties; one NaN in the larger shapes.
      Tensor x = RandomTensor(shape, rng, -4.0f, 4.0f);
      for (int64_t i = 0; i < x.numel(); ++i) {
        x.data<float>()[i] = std::round(x.data<float>()[i] * 2.0f) / 2.0f;
      }
      if (x.numel() > 100) x.data<float>()[x.numel() / 3] = NAN;
      const Shape reduced = Without(shape, dim);
      Tensor d_x = ToDevice(x);

      Tensor sum = EmptyF32(reduced), d_sum = DeviceEmpty(reduced);
      ASSERT_TRUE(cpu::SumDim(x, dim, sum).ok());
      ASSERT_TRUE(SumDim(stream(), d_x, dim, d_sum).ok());
      ExpectRelativeError(ToHost(d_sum), sum, 1e-6, "SumDim");

      Tensor dx = EmptyF32(shape), d_dx = DeviceEmpty(shape);
      ASSERT_TRUE(cpu::BroadcastDim(sum, dim, dx).ok());
      ASSERT_TRUE(BroadcastDim(stream(), ToDevice(sum), dim, d_dx).ok());
      ExpectRelativeError(ToHost(d_dx), dx, 0.0, "BroadcastDim");

      if (shape.dim(dim) == 0) continue;  // no maximum
      Tensor max = EmptyF32(reduced), d_max = DeviceEmpty(reduced);
      ASSERT_TRUE(cpu::MaxDim(x, dim, max).ok());
      ASSERT_TRUE(MaxDim(stream(), d_x, dim, d_max).ok());
      ExpectRelativeError(ToHost(d_max), max, 0.0, "MaxDim");

      Tensor dout = RandomTensor(reduced, rng);
      ASSERT_TRUE(cpu::MaxDimBackward(x, max, dout, dim, dx).ok());
      ASSERT_TRUE(MaxDimBackward(stream(), d_x, ToDevice(max), ToDevice(dout), dim, d_dx).ok());
      ExpectRelativeError(ToHost(d_dx), dx, 0.0, "MaxDimBackward");
    }
  }
}

TEST_F(ReduceCudaTest, NegativeDimensionsCountFromTheBack) {
  std::mt19937_64 rng(72);
  Tensor x = RandomTensor(Shape{6, 5, 300}, rng);
  Tensor sum = EmptyF32(Shape{6, 5}), d_sum = DeviceEmpty(Shape{6, 5});
  ASSERT_TRUE(cpu::SumDim(x, -1, sum).ok());
  ASSERT_TRUE(SumDim(stream(), ToDevice(x), -1, d_sum).ok());
  ExpectRelativeError(ToHost(d_sum), sum, 1e-6, "SumDim -1");
}

TEST(ReduceCudaChecks, RefuseHostTensorsWrongShapesAndDimensions) {
  testing::CudaTaggedViews on_cuda;
  const Tensor x = on_cuda(Shape{4, 5, 6}), out = on_cuda(Shape{4, 6});
  ExpectStatus(SumDim(nullptr, EmptyF32(Shape{4, 5, 6}), 1, out),
               absl::StatusCode::kInvalidArgument, {"SumDim", "x", "not on a CUDA device"});
  ExpectStatus(SumDim(nullptr, x, 3, out), absl::StatusCode::kInvalidArgument,
               {"SumDim", "dim 3", "out of range"});
  ExpectStatus(MaxDim(nullptr, x, 0, out), absl::StatusCode::kInvalidArgument,
               {"MaxDim", "out", "without dim 0"});
  ExpectStatus(MaxDim(nullptr, on_cuda(Shape{4, 0, 6}), 1, out),
               absl::StatusCode::kInvalidArgument, {"MaxDim", "no elements"});
  ExpectStatus(MaxDimBackward(nullptr, x, out, on_cuda(Shape{4, 6}, DType::kBF16), 1, x),
               absl::StatusCode::kInvalidArgument, {"MaxDimBackward", "dout"});
  ExpectStatus(BroadcastDim(nullptr, on_cuda(Shape{4, 5}), 1, x),
               absl::StatusCode::kInvalidArgument, {"BroadcastDim", "x"});
}

}  // namespace
}  // namespace strata::cuda
