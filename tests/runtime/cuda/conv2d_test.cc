// cuda::Conv2dForward and Conv2dBackward against the CPU kernel: odd sizes, stride 2, padding,
// dilation, grouped and depthwise convolutions (with a channel multiplier), 1x1, asymmetric
// kernels, reductions longer than a block, N = 0 and 1x1x1x1; GradMode::kAccumulate; the
// backward without x; and the launchers' argument errors (those run without a device).
#include "runtime/cuda/conv2d.h"

#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "runtime/cpu/conv2d.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using cpu::Conv2dParams;
using cpu::GradMode;
using testing::CopyOf;
using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

struct ConvCase {
  Shape x, w;
  Conv2dParams p;
};

std::vector<ConvCase> Cases() {
  return {
      {Shape{2, 3, 7, 9}, Shape{4, 3, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      {Shape{2, 4, 11, 10},
       Shape{6, 2, 3, 3},
       {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 2}},
      {Shape{2, 8, 9, 9}, Shape{8, 1, 3, 3}, {.pad_h = 1, .pad_w = 1, .groups = 8}},  // depthwise
      {Shape{1, 4, 13, 12},
       Shape{8, 1, 5, 5},  // depthwise, channel multiplier 2
       {.stride_h = 2, .stride_w = 2, .pad_h = 2, .pad_w = 2, .groups = 4}},
      {Shape{3, 5, 6, 5}, Shape{7, 5, 1, 1}, {}},                                    // 1x1
      {Shape{1, 6, 9, 7}, Shape{4, 6, 1, 1}, {.stride_h = 2, .stride_w = 2}},        // strided 1x1
      {Shape{2, 3, 10, 11},
       Shape{5, 3, 3, 3},
       {.pad_h = 2, .pad_w = 2, .dilation_h = 2, .dilation_w = 2}},
      {Shape{2, 2, 8, 9}, Shape{3, 2, 1, 3}, {.stride_w = 2, .pad_w = 1}},           // 1x3
      {Shape{4, 2, 20, 21}, Shape{3, 2, 3, 3}, {.pad_h = 1, .pad_w = 1}},            // long sums
      {Shape{2, 16, 6, 6}, Shape{32, 16, 3, 3}, {.pad_h = 1, .pad_w = 1}},
      {Shape{2, 3, 8, 8}, Shape{6, 1, 3, 3}, {.stride_h = 2, .stride_w = 2, .groups = 3}},
      {Shape{1, 1, 1, 1}, Shape{1, 1, 1, 1}, {}},
      {Shape{0, 3, 5, 5}, Shape{4, 3, 3, 3}, {.pad_h = 1, .pad_w = 1}},
  };
}

std::string Name(const ConvCase& c) {
  return absl::StrCat("x ", c.x.ToString(), " w ", c.w.ToString(), " stride ", c.p.stride_h, "x",
                      c.p.stride_w, " pad ", c.p.pad_h, "x", c.p.pad_w, " dilation ",
                      c.p.dilation_h, "x", c.p.dilation_w, " groups ", c.p.groups);
}

class Conv2dCudaTest : public CudaKernelTest {};

TEST_F(Conv2dCudaTest, ForwardMatchesTheCpuKernel) {
  std::mt19937_64 rng(21);
  for (const ConvCase& c : Cases()) {
    SCOPED_TRACE(Name(c));
    const Shape y_shape = *cpu::Conv2dOutputShape(c.x, c.w, c.p);
    const Tensor x = RandomTensor(c.x, rng), w = RandomTensor(c.w, rng);
    const Tensor b = RandomTensor(Shape{c.w[0]}, rng);
    std::vector<float> ws(cpu::Conv2dWorkspaceBytes(c.x, c.w, c.p, 2) / sizeof(float) + 1);
    for (bool with_bias : {true, false}) {
      Tensor want = EmptyF32(y_shape);
      ASSERT_TRUE(cpu::Conv2dForward(x, w, with_bias ? b : Tensor(), want, c.p,
                                     absl::MakeSpan(ws))
                      .ok());
      const Tensor got = DeviceEmpty(y_shape);
      ASSERT_TRUE(Conv2dForward(stream(), ToDevice(x), ToDevice(w),
                                with_bias ? ToDevice(b) : Tensor(), got, c.p, Tensor())
                      .ok());
      ExpectRelativeError(ToHost(got), want, 1e-5, with_bias ? "y (bias)" : "y (no bias)");
    }
  }
}

TEST_F(Conv2dCudaTest, BackwardMatchesTheCpuKernelInBothGradModes) {
  std::mt19937_64 rng(22);
  for (const ConvCase& c : Cases()) {
    SCOPED_TRACE(Name(c));
    const Shape y_shape = *cpu::Conv2dOutputShape(c.x, c.w, c.p);
    const Shape b_shape{c.w[0]};
    const Tensor x = RandomTensor(c.x, rng), w = RandomTensor(c.w, rng);
    const Tensor dy = RandomTensor(y_shape, rng);
    std::vector<float> ws(cpu::Conv2dWorkspaceBytes(c.x, c.w, c.p, 2) / sizeof(float) + 1);
    for (GradMode mode : {GradMode::kOverwrite, GradMode::kAccumulate}) {
      SCOPED_TRACE(mode == GradMode::kOverwrite ? "overwrite" : "accumulate");
      // The accumulated gradients start from the same values on both sides.
      const Tensor dw0 = RandomTensor(c.w, rng), db0 = RandomTensor(b_shape, rng);
      Tensor dx_want = EmptyF32(c.x), dw_want = CopyOf(dw0), db_want = CopyOf(db0);
      ASSERT_TRUE(cpu::Conv2dBackward(x, w, dy, dx_want, dw_want, db_want, c.p,
                                      absl::MakeSpan(ws), mode)
                      .ok());
      const Tensor dx = DeviceEmpty(c.x), dw = ToDevice(dw0), db = ToDevice(db0);
      ASSERT_TRUE(Conv2dBackward(stream(), ToDevice(x), ToDevice(w), ToDevice(dy), dx, dw, db,
                                 c.p, Tensor(), mode)
                      .ok());
      ExpectRelativeError(ToHost(dx), dx_want, 1e-5, "dx");
      ExpectRelativeError(ToHost(dw), dw_want, 1e-5, "dw");
      ExpectRelativeError(ToHost(db), db_want, 1e-5, "db");
    }
    // Without x (a frozen weight): dx and db only, then db alone.
    Tensor dx_want = EmptyF32(c.x), db_want = EmptyF32(b_shape);
    ASSERT_TRUE(cpu::Conv2dBackward(x, w, dy, dx_want, Tensor(), db_want, c.p,
                                    absl::MakeSpan(ws))
                    .ok());
    const Tensor d_w = ToDevice(w), d_dy = ToDevice(dy);
    const Tensor dx = DeviceEmpty(c.x), db = DeviceEmpty(b_shape);
    ASSERT_TRUE(
        Conv2dBackward(stream(), Tensor(), d_w, d_dy, dx, Tensor(), db, c.p, Tensor()).ok());
    ExpectRelativeError(ToHost(dx), dx_want, 1e-5, "dx without x");
    ExpectRelativeError(ToHost(db), db_want, 1e-5, "db without x");
    const Tensor db_alone = DeviceEmpty(b_shape);
    ASSERT_TRUE(Conv2dBackward(stream(), Tensor(), d_w, d_dy, Tensor(), Tensor(), db_alone, c.p,
                               Tensor())
                    .ok());
    ExpectRelativeError(ToHost(db_alone), db_want, 1e-5, "db alone");
  }
}

// The launchers check their arguments before they touch the device, so this runs anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(Conv2dCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  testing::CudaTaggedViews on_cuda;
  const Conv2dParams p{.pad_h = 1, .pad_w = 1};
  const Tensor x = on_cuda(Shape{2, 4, 6, 6}), w = on_cuda(Shape{8, 4, 3, 3});
  const Tensor y = on_cuda(Shape{2, 8, 6, 6}), b = on_cuda(Shape{8});
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(Conv2dWorkspaceBytes(x.shape(), w.shape(), p), 0u);
  ExpectStatus(Conv2dForward(nullptr, EmptyF32(x.shape()), w, b, y, p, Tensor()), kBad,
               {"Conv2dForward", "x", "not on a CUDA device"});
  ExpectStatus(Conv2dForward(nullptr, x, EmptyF32(w.shape()), b, y, p, Tensor()), kBad,
               {"Conv2dForward", "w", "not on a CUDA device"});
  ExpectStatus(Conv2dForward(nullptr, x, w, b, on_cuda(Shape{2, 8, 5, 6}), p, Tensor()), kBad,
               {"Conv2dForward", "y"});
  ExpectStatus(Conv2dForward(nullptr, x, w, on_cuda(Shape{7}), y, p, Tensor()), kBad,
               {"Conv2dForward", "b"});
  ExpectStatus(Conv2dForward(nullptr, x, on_cuda(w.shape(), DType::kBF16), b, y, p, Tensor()),
               kBad, {"Conv2dForward", "w"});
  ExpectStatus(Conv2dForward(nullptr, x, w, b, y, Conv2dParams{.groups = 3}, Tensor()), kBad,
               {"groups = 3"});
  ExpectStatus(Conv2dForward(nullptr, x, w, b, y, p, EmptyF32(Shape{4})), kBad,
               {"Conv2dForward", "workspace", "not on a CUDA device"});
  const Tensor dy = on_cuda(Shape{2, 8, 6, 6});
  ExpectStatus(Conv2dBackward(nullptr, x, w, on_cuda(Shape{2, 8, 6, 5}), x, w, b, p, Tensor()),
               kBad, {"Conv2dBackward", "dy"});
  ExpectStatus(Conv2dBackward(nullptr, x, w, dy, EmptyF32(x.shape()), w, b, p, Tensor()), kBad,
               {"Conv2dBackward", "dx", "not on a CUDA device"});
  ExpectStatus(Conv2dBackward(nullptr, x, w, dy, x, on_cuda(Shape{8, 4, 3, 2}), b, p, Tensor()),
               kBad, {"Conv2dBackward", "dw"});
  ExpectStatus(Conv2dBackward(nullptr, x, w, dy, x, w, on_cuda(Shape{8}, DType::kI32), p,
                              Tensor()),
               kBad, {"Conv2dBackward", "db"});
  ExpectStatus(Conv2dBackward(nullptr, Tensor(), w, dy, x, w, b, p, Tensor()), kBad,
               {"Conv2dBackward", "dw needs x"});
  ExpectStatus(Conv2dBackward(nullptr, Tensor(), w, on_cuda(Shape{2, 7, 6, 6}), Tensor(),
                              Tensor(), b, p, Tensor()),
               kBad, {"Conv2dBackward", "dy", "does not match w"});
}

}  // namespace
}  // namespace strata::cuda
