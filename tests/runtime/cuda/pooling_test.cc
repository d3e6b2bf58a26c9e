// cuda pooling against cpu pooling: max and average pooling (forward and backward, with odd
// sizes, stride 1 and 2, padding, ties and NaNs), global average pooling, and the launchers'
// argument errors (those run without a device).
#include "runtime/cuda/pooling.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/pooling.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using cpu::Pool2dParams;
using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

struct PoolCase {
  Shape x;
  Pool2dParams p;
};

std::vector<PoolCase> Cases() {
  return {
      {Shape{2, 3, 8, 8}, {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2}},
      {Shape{2, 3, 7, 9}, {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2}},
      {Shape{1, 5, 13, 11},
       {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}},
      {Shape{3, 2, 9, 10},
       {.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1}},
      {Shape{2, 4, 33, 17},
       {.kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 1}},
      {Shape{1, 2, 5, 5}, {.kernel_h = 5, .kernel_w = 5, .stride_h = 3, .stride_w = 3}},
      {Shape{1, 1, 1, 1}, {.kernel_h = 1, .kernel_w = 1, .stride_h = 1, .stride_w = 1}},
      {Shape{0, 3, 6, 6}, {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2}},
  };
}

std::string Name(const PoolCase& c) {
  return absl::StrCat(c.x.ToString(), " k", c.p.kernel_h, "x", c.p.kernel_w, " s", c.p.stride_h,
                      "x", c.p.stride_w, " p", c.p.pad_h, "x", c.p.pad_w);
}

// Values on a coarse grid, so that windows hold ties (the first maximum must win).
Tensor TiedTensor(const Shape& shape, std::mt19937_64& rng) {
  Tensor t = RandomTensor(shape, rng);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = std::round(p[i] * 4.0f) / 4.0f;
  return t;
}

class PoolingCudaTest : public CudaKernelTest {};

TEST_F(PoolingCudaTest, MaxPoolMatchesTheCpuKernelBitForBit) {
  std::mt19937_64 rng(11);
  for (const PoolCase& c : Cases()) {
    SCOPED_TRACE(Name(c));
    const Shape y_shape = *cpu::Pool2dOutputShape(c.x, c.p);
    for (bool with_nan : {false, true}) {
      Tensor x = TiedTensor(c.x, rng);
      if (with_nan && x.numel() > 3) {
        x.data<float>()[x.numel() / 3] = std::numeric_limits<float>::quiet_NaN();
      }
      const Tensor dy = RandomTensor(y_shape, rng);
      Tensor y_want = EmptyF32(y_shape), dx_want = EmptyF32(c.x);
      ASSERT_TRUE(cpu::MaxPool2dForward(x, y_want, c.p).ok());
      ASSERT_TRUE(cpu::MaxPool2dBackward(x, dy, dx_want, c.p).ok());
      const Tensor d_x = ToDevice(x), d_dy = ToDevice(dy);
      const Tensor d_y = DeviceEmpty(y_shape), d_dx = DeviceEmpty(c.x);
      ASSERT_TRUE(MaxPool2dForward(stream(), d_x, d_y, c.p).ok());
      ASSERT_TRUE(MaxPool2dBackward(stream(), d_x, d_dy, d_dx, c.p).ok());
      ExpectRelativeError(ToHost(d_y), y_want, 0.0, "max pool forward");
      ExpectRelativeError(ToHost(d_dx), dx_want, 0.0, "max pool backward");
    }
  }
}

TEST_F(PoolingCudaTest, AvgPoolMatchesTheCpuKernel) {
  std::mt19937_64 rng(12);
  for (const PoolCase& c : Cases()) {
    SCOPED_TRACE(Name(c));
    const Shape y_shape = *cpu::Pool2dOutputShape(c.x, c.p);
    const Tensor x = RandomTensor(c.x, rng), dy = RandomTensor(y_shape, rng);
    Tensor y_want = EmptyF32(y_shape), dx_want = EmptyF32(c.x);
    ASSERT_TRUE(cpu::AvgPool2dForward(x, y_want, c.p).ok());
    ASSERT_TRUE(cpu::AvgPool2dBackward(dy, dx_want, c.p).ok());
    const Tensor d_y = DeviceEmpty(y_shape), d_dx = DeviceEmpty(c.x);
    ASSERT_TRUE(AvgPool2dForward(stream(), ToDevice(x), d_y, c.p).ok());
    ASSERT_TRUE(AvgPool2dBackward(stream(), ToDevice(dy), d_dx, c.p).ok());
    // The same sums in the same order: equal unless the CPU compiler fused a multiply-add.
    ExpectRelativeError(ToHost(d_y), y_want, 1e-6, "avg pool forward");
    ExpectRelativeError(ToHost(d_dx), dx_want, 1e-6, "avg pool backward");
  }
}

TEST_F(PoolingCudaTest, GlobalAvgPoolMatchesTheCpuKernel) {
  std::mt19937_64 rng(13);
  for (const Shape& shape : {Shape{2, 3, 7, 7}, Shape{1, 5, 1, 1}, Shape{3, 2, 40, 41},
                             Shape{1, 1, 1, 300}, Shape{0, 3, 4, 4}}) {
    SCOPED_TRACE(shape.ToString());
    const Shape y_shape{shape[0], shape[1]};
    const Tensor x = RandomTensor(shape, rng), dy = RandomTensor(y_shape, rng);
    Tensor y_want = EmptyF32(y_shape), dx_want = EmptyF32(shape);
    ASSERT_TRUE(cpu::GlobalAvgPoolForward(x, y_want).ok());
    ASSERT_TRUE(cpu::GlobalAvgPoolBackward(dy, dx_want).ok());
    const Tensor d_y = DeviceEmpty(y_shape), d_dx = DeviceEmpty(shape);
    ASSERT_TRUE(GlobalAvgPoolForward(stream(), ToDevice(x), d_y).ok());
    ASSERT_TRUE(GlobalAvgPoolBackward(stream(), ToDevice(dy), d_dx).ok());
    ExpectRelativeError(ToHost(d_y), y_want, 1e-5, "global avg pool forward");
    ExpectRelativeError(ToHost(d_dx), dx_want, 0.0, "global avg pool backward");
  }
}

// The launchers check their arguments before they touch the device, so these run anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(PoolingCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  testing::CudaTaggedViews on_cuda;
  const Pool2dParams p{.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
  const Tensor x = on_cuda(Shape{1, 2, 4, 4}), y = on_cuda(Shape{1, 2, 2, 2});
  const Tensor host_x = EmptyF32(Shape{1, 2, 4, 4});
  const auto kBad = absl::StatusCode::kInvalidArgument;
  ExpectStatus(MaxPool2dForward(nullptr, host_x, y, p), kBad,
               {"MaxPool2dForward", "x", "not on a CUDA device"});
  ExpectStatus(MaxPool2dForward(nullptr, x, on_cuda(Shape{1, 2, 3, 2}), p), kBad,
               {"MaxPool2dForward", "y"});
  ExpectStatus(MaxPool2dForward(nullptr, on_cuda(Shape{1, 2, 4, 4}, DType::kBF16), y, p), kBad,
               {"MaxPool2dForward", "x"});
  ExpectStatus(MaxPool2dBackward(nullptr, x, y, on_cuda(Shape{1, 2, 4, 5}), p), kBad,
               {"MaxPool2dBackward", "dx"});
  ExpectStatus(MaxPool2dBackward(nullptr, x, EmptyF32(Shape{1, 2, 2, 2}), x, p), kBad,
               {"MaxPool2dBackward", "dy", "not on a CUDA device"});
  ExpectStatus(AvgPool2dForward(nullptr, x, y, Pool2dParams{.kernel_h = 2, .kernel_w = 2,
                                                            .stride_h = 0, .stride_w = 2}),
               kBad, {"stride_h"});
  ExpectStatus(AvgPool2dForward(nullptr, on_cuda(Shape{2, 4, 4}), y, p), kBad,
               {"AvgPool2dForward", "x"});
  ExpectStatus(AvgPool2dBackward(nullptr, on_cuda(Shape{1, 2, 2, 3}), x, p), kBad,
               {"AvgPool2dBackward", "dy"});
  ExpectStatus(AvgPool2dBackward(nullptr, y, host_x, p), kBad,
               {"AvgPool2dBackward", "dx", "not on a CUDA device"});
  ExpectStatus(GlobalAvgPoolForward(nullptr, x, on_cuda(Shape{1, 3})), kBad,
               {"GlobalAvgPoolForward", "y"});
  ExpectStatus(GlobalAvgPoolForward(nullptr, on_cuda(Shape{1, 2, 0, 4}), on_cuda(Shape{1, 2})),
               kBad, {"GlobalAvgPoolForward", "no pixels"});
  ExpectStatus(GlobalAvgPoolBackward(nullptr, EmptyF32(Shape{1, 2}), x), kBad,
               {"GlobalAvgPoolBackward", "dy", "not on a CUDA device"});
  ExpectStatus(GlobalAvgPoolBackward(nullptr, on_cuda(Shape{1, 2}, DType::kI32), x), kBad,
               {"GlobalAvgPoolBackward", "dy"});
}

}  // namespace
}  // namespace strata::cuda
