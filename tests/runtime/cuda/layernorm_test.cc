// cuda::LayerNormForward and cuda::LayerNormBackward against the CPU kernels (each backward fed the
// other's statistics, both grad modes, with and without residual), and their argument errors.
#include "runtime/cuda/layernorm.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/layernorm.h"
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

class LayerNormCudaTest : public CudaKernelTest {};

// Odd widths, widths below one warp, wider than one block (256) and much wider (looping rows),
// a single row and no rows.
const std::vector<Shape>& Shapes() {
  static const std::vector<Shape> shapes = {Shape{1, 1},   Shape{3, 5},     Shape{7, 33},
                                            Shape{2, 3, 100}, Shape{17, 257}, Shape{5, 1000},
                                            Shape{3, 5000}, Shape{300, 64},  Shape{1, 384},
                                            Shape{0, 8}};
  return shapes;
}

TEST_F(LayerNormCudaTest, ForwardMatchesTheCpuKernel) {
  std::mt19937_64 rng(11);
  for (const Shape& shape : Shapes()) {
    SCOPED_TRACE(shape.ToString());
    const int64_t c = shape.dim(-1), rows = shape.numel() / c;
    Tensor x = RandomTensor(shape, rng, -2.0f, 3.0f);
    Tensor gamma = RandomTensor(Shape{c}, rng), beta = RandomTensor(Shape{c}, rng);
    Tensor y = EmptyF32(shape), mean = EmptyF32(Shape{rows}), rstd = EmptyF32(Shape{rows});
    ASSERT_TRUE(cpu::LayerNormForward(x, gamma, beta, 1e-5f, y, mean, rstd).ok());
    Tensor d_y = DeviceEmpty(shape), d_mean = DeviceEmpty(Shape{rows});
    Tensor d_rstd = DeviceEmpty(Shape{rows});
    ASSERT_TRUE(LayerNormForward(stream(), ToDevice(x), ToDevice(gamma), ToDevice(beta), 1e-5f,
                                 d_y, d_mean, d_rstd)
                    .ok());
    ExpectRelativeError(ToHost(d_y), y, 1e-5, "y");
    ExpectRelativeError(ToHost(d_mean), mean, 1e-5, "mean");
    ExpectRelativeError(ToHost(d_rstd), rstd, 1e-5, "rstd");
  }
}

TEST_F(LayerNormCudaTest, BackwardMatchesTheCpuKernelInBothModes) {
  std::mt19937_64 rng(12);
  for (const Shape& shape : Shapes()) {
    const int64_t c = shape.dim(-1), rows = shape.numel() / c;
    Tensor x = RandomTensor(shape, rng, -2.0f, 3.0f);
    Tensor gamma = RandomTensor(Shape{c}, rng), beta = RandomTensor(Shape{c}, rng);
    Tensor dy = RandomTensor(shape, rng), residual = RandomTensor(shape, rng);
    Tensor y = EmptyF32(shape), mean = EmptyF32(Shape{rows}), rstd = EmptyF32(Shape{rows});
    ASSERT_TRUE(cpu::LayerNormForward(x, gamma, beta, 1e-5f, y, mean, rstd).ok());
    for (GradMode mode : {GradMode::kOverwrite, GradMode::kAccumulate}) {
      for (bool with_residual : {false, true}) {
        SCOPED_TRACE(shape.ToString() + (mode == GradMode::kAccumulate ? " accumulate" : "") +
                     (with_residual ? " residual" : ""));
        Tensor dg0 = RandomTensor(Shape{c}, rng), db0 = RandomTensor(Shape{c}, rng);
        Tensor dx = EmptyF32(shape), dg = CopyOf(dg0), db = CopyOf(db0);
        ASSERT_TRUE(cpu::LayerNormBackward(x, gamma, mean, rstd, dy, dx, dg, db, mode,
                                           with_residual ? residual : Tensor())
                        .ok());
        Tensor d_dx = DeviceEmpty(shape), d_dg = ToDevice(dg0), d_db = ToDevice(db0);
        Tensor ws = DeviceEmpty(Shape{static_cast<int64_t>(
            LayerNormBackwardWorkspaceBytes(shape) / sizeof(float))});
        ASSERT_TRUE(LayerNormBackward(stream(), ToDevice(x), ToDevice(gamma), ToDevice(mean),
                                      ToDevice(rstd), ToDevice(dy), d_dx, d_dg, d_db, ws, mode,
                                      with_residual ? ToDevice(residual) : Tensor())
                        .ok());
        // Over one column dx is cancellation, 0 or nearly (the inputs are O(1)): measured against
        // the inputs' scale, since where the compiler fuses a multiply-add decides its last bits.
        ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "dx", c == 1 ? 1.0 : 0.0);
        ExpectRelativeError(ToHost(d_dg), dg, 1e-5, "dgamma");
        ExpectRelativeError(ToHost(d_db), db, 1e-5, "dbeta");
      }
    }
  }
}

// dx written over dy (and over the residual), parameter gradients alone, and the CPU backward
// fed the device forward's statistics.
TEST_F(LayerNormCudaTest, AliasesPartialOutputsAndSharedStatistics) {
  std::mt19937_64 rng(13);
  const Shape shape{33, 700};
  const int64_t c = 700, rows = 33;
  Tensor x = RandomTensor(shape, rng), gamma = RandomTensor(Shape{c}, rng);
  Tensor beta = RandomTensor(Shape{c}, rng), dy = RandomTensor(shape, rng);
  Tensor residual = RandomTensor(shape, rng);
  Tensor d_x = ToDevice(x), d_gamma = ToDevice(gamma);
  Tensor d_y = DeviceEmpty(shape), d_mean = DeviceEmpty(Shape{rows});
  Tensor d_rstd = DeviceEmpty(Shape{rows});
  ASSERT_TRUE(
      LayerNormForward(stream(), d_x, d_gamma, ToDevice(beta), 1e-5f, d_y, d_mean, d_rstd).ok());
  const Tensor mean = ToHost(d_mean), rstd = ToHost(d_rstd);
  Tensor dx = EmptyF32(shape), dg = EmptyF32(Shape{c}), db = EmptyF32(Shape{c});
  ASSERT_TRUE(cpu::LayerNormBackward(x, gamma, mean, rstd, dy, dx, dg, db, GradMode::kOverwrite,
                                     residual)
                  .ok());
  Tensor ws = DeviceEmpty(
      Shape{static_cast<int64_t>(LayerNormBackwardWorkspaceBytes(shape) / sizeof(float))});
  // dx over dy.
  Tensor d_dy = ToDevice(dy), d_res = ToDevice(residual);
  Tensor d_dg = DeviceEmpty(Shape{c}), d_db = DeviceEmpty(Shape{c});
  ASSERT_TRUE(LayerNormBackward(stream(), d_x, d_gamma, d_mean, d_rstd, d_dy, d_dy, d_dg, d_db, ws,
                                GradMode::kOverwrite, d_res)
                  .ok());
  ExpectRelativeError(ToHost(d_dy), dx, 1e-5, "dx over dy");
  ExpectRelativeError(ToHost(d_dg), dg, 1e-5, "dgamma");
  ExpectRelativeError(ToHost(d_db), db, 1e-5, "dbeta");
  // dx over the residual.
  d_dy = ToDevice(dy);
  ASSERT_TRUE(LayerNormBackward(stream(), d_x, d_gamma, d_mean, d_rstd, d_dy, d_res, Tensor(),
                                Tensor(), Tensor(), GradMode::kOverwrite, d_res)
                  .ok());
  ExpectRelativeError(ToHost(d_res), dx, 1e-5, "dx over residual");
  // dbeta alone, no dx.
  Tensor d_db2 = DeviceEmpty(Shape{c});
  ASSERT_TRUE(LayerNormBackward(stream(), d_x, d_gamma, d_mean, d_rstd, d_dy, Tensor(), Tensor(),
                                d_db2, ws)
                  .ok());
  ExpectRelativeError(ToHost(d_db2), db, 1e-5, "dbeta alone");
}

TEST_F(LayerNormCudaTest, ParameterGradientsAreBitwiseReproducible) {
  std::mt19937_64 rng(14);
  const Shape shape{4099, 96};
  Tensor x = RandomTensor(shape, rng), dy = RandomTensor(shape, rng);
  Tensor gamma = RandomTensor(Shape{96}, rng), beta = RandomTensor(Shape{96}, rng);
  Tensor d_x = ToDevice(x), d_gamma = ToDevice(gamma), d_dy = ToDevice(dy);
  Tensor d_y = DeviceEmpty(shape), d_mean = DeviceEmpty(Shape{4099});
  Tensor d_rstd = DeviceEmpty(Shape{4099});
  ASSERT_TRUE(
      LayerNormForward(stream(), d_x, d_gamma, ToDevice(beta), 1e-5f, d_y, d_mean, d_rstd).ok());
  Tensor ws = DeviceEmpty(
      Shape{static_cast<int64_t>(LayerNormBackwardWorkspaceBytes(shape) / sizeof(float))});
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    Tensor d_dg = DeviceEmpty(Shape{96});
    ASSERT_TRUE(LayerNormBackward(stream(), d_x, d_gamma, d_mean, d_rstd, d_dy, Tensor(), d_dg,
                                  Tensor(), ws)
                    .ok());
    const Tensor got = ToHost(d_dg);
    std::vector<float> v(got.data<float>(), got.data<float>() + 96);
    if (run == 0) {
      first = v;
    } else {
      EXPECT_EQ(v, first) << "run " << run;
    }
  }
}

TEST(LayerNormCudaChecks, RefuseHostTensorsWrongShapesAndSmallWorkspaces) {
  testing::CudaTaggedViews on_cuda;
  const Tensor x = on_cuda(Shape{4, 8}), g = on_cuda(Shape{8}), stats = on_cuda(Shape{4});
  ExpectStatus(LayerNormForward(nullptr, EmptyF32(Shape{4, 8}), g, g, 1e-5f, x, stats, stats),
               absl::StatusCode::kInvalidArgument,
               {"LayerNormForward", "x", "not on a CUDA device"});
  ExpectStatus(LayerNormForward(nullptr, x, on_cuda(Shape{7}), g, 1e-5f, x, stats, stats),
               absl::StatusCode::kInvalidArgument, {"LayerNormForward", "gamma"});
  ExpectStatus(LayerNormForward(nullptr, x, g, g, 1e-5f, x, on_cuda(Shape{5}), stats),
               absl::StatusCode::kInvalidArgument, {"LayerNormForward", "mean", "one per row"});
  ExpectStatus(LayerNormForward(nullptr, x, g, on_cuda(Shape{8}, DType::kBF16), 1e-5f, x, stats,
                                stats),
               absl::StatusCode::kInvalidArgument, {"LayerNormForward", "beta"});
  ExpectStatus(LayerNormForward(nullptr, x, g, g, 0.0f, x, stats, stats),
               absl::StatusCode::kInvalidArgument, {"LayerNormForward", "eps"});
  ExpectStatus(LayerNormBackward(nullptr, x, g, stats, stats, on_cuda(Shape{4, 9}), x, g, g,
                                 on_cuda(Shape{1024})),
               absl::StatusCode::kInvalidArgument, {"LayerNormBackward", "dy"});
  ExpectStatus(LayerNormBackward(nullptr, x, g, stats, stats, x, x, g, g, on_cuda(Shape{3})),
               absl::StatusCode::kInvalidArgument, {"LayerNormBackward", "workspace", "bytes"});
  ExpectStatus(LayerNormBackward(nullptr, x, g, stats, stats, x, x, g, g, EmptyF32(Shape{1024})),
               absl::StatusCode::kInvalidArgument,
               {"LayerNormBackward", "workspace", "not on a CUDA device"});
  ExpectStatus(LayerNormBackward(nullptr, x, g, stats, stats, x, Tensor(), g, g,
                                 on_cuda(Shape{1024}), GradMode::kOverwrite, x),
               absl::StatusCode::kInvalidArgument, {"LayerNormBackward", "residual"});
  ExpectStatus(LayerNormBackward(nullptr, x, g, stats, stats, x, x, on_cuda(Shape{8}, DType::kI32),
                                 g, on_cuda(Shape{1024})),
               absl::StatusCode::kInvalidArgument, {"LayerNormBackward", "dgamma"});
}

}  // namespace
}  // namespace strata::cuda
