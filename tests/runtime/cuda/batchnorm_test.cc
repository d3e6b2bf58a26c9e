// cuda BatchNorm2d against the CPU kernels: training mode (statistics, running statistics,
// in-place y, an offset mean, channels longer than a block, 2 values per channel) and its
// backward in both GradModes; frozen mode forward and backward (with and without x); and the
// launchers' argument errors (those run without a device).
#include "runtime/cuda/batchnorm.h"

#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/batchnorm.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using cpu::GradMode;
using testing::CopyOf;
using testing::CudaKernelTest;
using testing::EmptyF32;
using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomTensor;

std::vector<Shape> Shapes() {
  return {Shape{2, 3, 5, 7}, Shape{4, 16, 9, 9}, Shape{1, 3, 40, 41}, Shape{3, 2, 1, 1},
          Shape{2, 1, 1, 1}, Shape{1, 5, 1, 2}};
}

// The backward's shapes: with 2 values per channel the normalized values are +-1 whatever x is, so
// dx is eps's tiny effect plus rounding, and no two summation orders agree on it.
std::vector<Shape> BackwardShapes() {
  std::vector<Shape> shapes;
  for (const Shape& s : Shapes()) {
    if (s[0] * s[2] * s[3] > 2) shapes.push_back(s);
  }
  return shapes;
}

class BatchNormCudaTest : public CudaKernelTest {};

TEST_F(BatchNormCudaTest, TrainForwardMatchesTheCpuKernel) {
  std::mt19937_64 rng(31);
  for (const Shape& shape : Shapes()) {
    for (float offset : {0.0f, 100.0f}) {  // a large mean against the spread: the shift matters
      SCOPED_TRACE(absl::StrCat(shape.ToString(), " offset ", offset));
      const Shape c{shape[1]};
      const Tensor x = RandomTensor(shape, rng, offset - 1.0f, offset + 1.0f);
      const Tensor gamma = RandomTensor(c, rng), beta = RandomTensor(c, rng);
      const Tensor rm0 = RandomTensor(c, rng), rv0 = RandomTensor(c, rng, 0.5f, 2.0f);
      Tensor y = EmptyF32(shape), mean = EmptyF32(c), rstd = EmptyF32(c);
      Tensor rm = CopyOf(rm0), rv = CopyOf(rv0);
      ASSERT_TRUE(
          cpu::BatchNorm2dTrainForward(x, gamma, beta, 1e-5f, y, mean, rstd, rm, rv, 0.1f).ok());
      const Tensor d_y = DeviceEmpty(shape), d_mean = DeviceEmpty(c), d_rstd = DeviceEmpty(c);
      const Tensor d_rm = ToDevice(rm0), d_rv = ToDevice(rv0);
      ASSERT_TRUE(BatchNorm2dTrainForward(stream(), ToDevice(x), ToDevice(gamma), ToDevice(beta),
                                          1e-5f, d_y, d_mean, d_rstd, d_rm, d_rv, 0.1f)
                      .ok());
      ExpectRelativeError(ToHost(d_y), y, 1e-5, "y");
      ExpectRelativeError(ToHost(d_mean), mean, 1e-6, "save_mean");
      ExpectRelativeError(ToHost(d_rstd), rstd, 1e-5, "save_rstd");
      ExpectRelativeError(ToHost(d_rm), rm, 1e-6, "running_mean");
      ExpectRelativeError(ToHost(d_rv), rv, 1e-5, "running_var");
      // In place (y is x), without the optional outputs.
      const Tensor d_x = ToDevice(x);
      ASSERT_TRUE(BatchNorm2dTrainForward(stream(), d_x, ToDevice(gamma), ToDevice(beta), 1e-5f,
                                          d_x, Tensor(), Tensor())
                      .ok());
      ExpectRelativeError(ToHost(d_x), y, 1e-5, "y in place");
    }
  }
}

TEST_F(BatchNormCudaTest, TrainBackwardMatchesTheCpuKernelInBothGradModes) {
  std::mt19937_64 rng(32);
  for (const Shape& shape : BackwardShapes()) {
    SCOPED_TRACE(shape.ToString());
    const Shape c{shape[1]};
    const Tensor x = RandomTensor(shape, rng), dy = RandomTensor(shape, rng);
    const Tensor gamma = RandomTensor(c, rng), beta = RandomTensor(c, rng);
    Tensor y = EmptyF32(shape), mean = EmptyF32(c), rstd = EmptyF32(c);
    ASSERT_TRUE(cpu::BatchNorm2dTrainForward(x, gamma, beta, 1e-5f, y, mean, rstd).ok());
    for (GradMode mode : {GradMode::kOverwrite, GradMode::kAccumulate}) {
      SCOPED_TRACE(mode == GradMode::kOverwrite ? "overwrite" : "accumulate");
      const Tensor dg0 = RandomTensor(c, rng), db0 = RandomTensor(c, rng);
      Tensor dx = EmptyF32(shape), dg = CopyOf(dg0), db = CopyOf(db0);
      ASSERT_TRUE(
          cpu::BatchNorm2dTrainBackward(x, gamma, mean, rstd, dy, dx, dg, db, mode).ok());
      const Tensor d_dx = DeviceEmpty(shape), d_dg = ToDevice(dg0), d_db = ToDevice(db0);
      ASSERT_TRUE(BatchNorm2dTrainBackward(stream(), ToDevice(x), ToDevice(gamma),
                                           ToDevice(mean), ToDevice(rstd), ToDevice(dy), d_dx,
                                           d_dg, d_db, mode)
                      .ok());
      ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "dx");
      ExpectRelativeError(ToHost(d_dg), dg, 1e-5, "dgamma");
      ExpectRelativeError(ToHost(d_db), db, 1e-5, "dbeta");
    }
    // dx alone.
    Tensor dx = EmptyF32(shape);
    ASSERT_TRUE(
        cpu::BatchNorm2dTrainBackward(x, gamma, mean, rstd, dy, dx, Tensor(), Tensor()).ok());
    const Tensor d_dx = DeviceEmpty(shape);
    ASSERT_TRUE(BatchNorm2dTrainBackward(stream(), ToDevice(x), ToDevice(gamma), ToDevice(mean),
                                         ToDevice(rstd), ToDevice(dy), d_dx, Tensor(), Tensor())
                    .ok());
    ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "dx alone");
  }
}

TEST_F(BatchNormCudaTest, FrozenMatchesTheCpuKernel) {
  std::mt19937_64 rng(33);
  for (const Shape& shape : Shapes()) {
    SCOPED_TRACE(shape.ToString());
    const Shape c{shape[1]};
    const Tensor x = RandomTensor(shape, rng), dy = RandomTensor(shape, rng);
    const Tensor gamma = RandomTensor(c, rng), beta = RandomTensor(c, rng);
    const Tensor rm = RandomTensor(c, rng), rv = RandomTensor(c, rng, 0.1f, 2.0f);
    Tensor y = EmptyF32(shape);
    ASSERT_TRUE(cpu::BatchNorm2dFrozenForward(x, gamma, beta, rm, rv, 1e-5f, y).ok());
    const Tensor d_gamma = ToDevice(gamma), d_rm = ToDevice(rm), d_rv = ToDevice(rv);
    const Tensor d_y = DeviceEmpty(shape);
    ASSERT_TRUE(BatchNorm2dFrozenForward(stream(), ToDevice(x), d_gamma, ToDevice(beta), d_rm,
                                         d_rv, 1e-5f, d_y)
                    .ok());
    ExpectRelativeError(ToHost(d_y), y, 1e-5, "frozen y");
    for (GradMode mode : {GradMode::kOverwrite, GradMode::kAccumulate}) {
      SCOPED_TRACE(mode == GradMode::kOverwrite ? "overwrite" : "accumulate");
      const Tensor dg0 = RandomTensor(c, rng), db0 = RandomTensor(c, rng);
      Tensor dx = EmptyF32(shape), dg = CopyOf(dg0), db = CopyOf(db0);
      ASSERT_TRUE(
          cpu::BatchNorm2dFrozenBackward(x, gamma, rm, rv, 1e-5f, dy, dx, dg, db, mode).ok());
      const Tensor d_dx = DeviceEmpty(shape), d_dg = ToDevice(dg0), d_db = ToDevice(db0);
      ASSERT_TRUE(BatchNorm2dFrozenBackward(stream(), ToDevice(x), d_gamma, d_rm, d_rv, 1e-5f,
                                            ToDevice(dy), d_dx, d_dg, d_db, mode)
                      .ok());
      ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "frozen dx");
      ExpectRelativeError(ToHost(d_dg), dg, 1e-5, "frozen dgamma");
      ExpectRelativeError(ToHost(d_db), db, 1e-5, "frozen dbeta");
    }
    // Without x: dx and dbeta.
    Tensor dx = EmptyF32(shape), db = EmptyF32(c);
    ASSERT_TRUE(
        cpu::BatchNorm2dFrozenBackward(Tensor(), gamma, rm, rv, 1e-5f, dy, dx, Tensor(), db).ok());
    const Tensor d_dx = DeviceEmpty(shape), d_db = DeviceEmpty(c);
    ASSERT_TRUE(BatchNorm2dFrozenBackward(stream(), Tensor(), d_gamma, d_rm, d_rv, 1e-5f,
                                          ToDevice(dy), d_dx, Tensor(), d_db)
                    .ok());
    ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "frozen dx without x");
    ExpectRelativeError(ToHost(d_db), db, 1e-5, "frozen dbeta without x");
  }
}

// The launchers check their arguments before they touch the device, so this runs anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(BatchNormCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  testing::CudaTaggedViews on_cuda;
  const Tensor x = on_cuda(Shape{2, 3, 4, 4}), c = on_cuda(Shape{3});
  const auto kBad = absl::StatusCode::kInvalidArgument;
  ExpectStatus(BatchNorm2dTrainForward(nullptr, EmptyF32(x.shape()), c, c, 1e-5f, x, c, c), kBad,
               {"BatchNorm2dTrainForward", "x", "not on a CUDA device"});
  ExpectStatus(BatchNorm2dTrainForward(nullptr, x, on_cuda(Shape{4}), c, 1e-5f, x, c, c), kBad,
               {"BatchNorm2dTrainForward", "gamma"});
  ExpectStatus(BatchNorm2dTrainForward(nullptr, x, c, c, 1e-5f, on_cuda(Shape{2, 3, 4, 5}), c, c),
               kBad, {"BatchNorm2dTrainForward", "y"});
  ExpectStatus(BatchNorm2dTrainForward(nullptr, x, c, c, 1e-5f, x, on_cuda(Shape{3}, DType::kBF16),
                                       c),
               kBad, {"BatchNorm2dTrainForward", "save_mean"});
  ExpectStatus(BatchNorm2dTrainForward(nullptr, x, c, c, 1e-5f, x, c, c, c, Tensor()), kBad,
               {"BatchNorm2dTrainForward", "running_mean and running_var"});
  ExpectStatus(BatchNorm2dTrainForward(nullptr, x, c, c, 0.0f, x, c, c), kBad, {"eps"});
  ExpectStatus(BatchNorm2dTrainForward(nullptr, x, c, c, 1e-5f, x, c, c, c, c, 1.5f), kBad,
               {"momentum"});
  const Tensor one = on_cuda(Shape{1, 3, 1, 1});
  ExpectStatus(BatchNorm2dTrainForward(nullptr, one, c, c, 1e-5f, one, c, c), kBad,
               {"BatchNorm2dTrainForward", "more than 1 value per channel"});
  ExpectStatus(BatchNorm2dTrainBackward(nullptr, x, c, c, EmptyF32(Shape{3}), x, x, c, c), kBad,
               {"BatchNorm2dTrainBackward", "save_rstd", "not on a CUDA device"});
  ExpectStatus(BatchNorm2dTrainBackward(nullptr, x, c, c, c, on_cuda(Shape{2, 3, 4}), x, c, c),
               kBad, {"BatchNorm2dTrainBackward", "dy"});
  ExpectStatus(BatchNorm2dTrainBackward(nullptr, x, c, c, c, x, x, on_cuda(Shape{2}), c), kBad,
               {"BatchNorm2dTrainBackward", "dgamma"});
  ExpectStatus(BatchNorm2dFrozenForward(nullptr, x, c, c, c, on_cuda(Shape{3}, DType::kI32),
                                        1e-5f, x),
               kBad, {"BatchNorm2dFrozenForward", "running_var"});
  ExpectStatus(BatchNorm2dFrozenForward(nullptr, x, c, EmptyF32(Shape{3}), c, c, 1e-5f, x), kBad,
               {"BatchNorm2dFrozenForward", "beta", "not on a CUDA device"});
  ExpectStatus(BatchNorm2dFrozenBackward(nullptr, Tensor(), c, c, c, 1e-5f, x, x, c, c), kBad,
               {"BatchNorm2dFrozenBackward", "dgamma needs x"});
  ExpectStatus(BatchNorm2dFrozenBackward(nullptr, x, c, c, c, 1e-5f, x, x, c, on_cuda(Shape{4})),
               kBad, {"BatchNorm2dFrozenBackward", "dbeta"});
  ExpectStatus(BatchNorm2dFrozenBackward(nullptr, x, c, c, c, 1e-5f, x, EmptyF32(x.shape()),
                                         Tensor(), Tensor()),
               kBad, {"BatchNorm2dFrozenBackward", "dx", "not on a CUDA device"});
}

}  // namespace
}  // namespace strata::cuda
