// cuda synchronized BatchNorm2d against the CPU kernels: W ranks simulated in one process (each
// rank's buffer written by its Local* kernel, the all-reduce a sum on the host), the buffers
// themselves, the synced forward (y, saved and running statistics) and backward (dgamma, dbeta,
// dx); and the launchers' argument errors (those run without a device).
#include "runtime/cuda/sync_batchnorm.h"

#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/sync_batchnorm.h"
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
using testing::ZerosF32;

// The all-reduce: the sum of the ranks' buffers (host tensors of one shape).
Tensor SumOf(const std::vector<Tensor>& parts) {
  Tensor sum = ZerosF32(parts[0].shape());
  for (const Tensor& p : parts) {
    for (int64_t i = 0; i < sum.numel(); ++i) sum.data<float>()[i] += p.data<float>()[i];
  }
  return sum;
}

class SyncBatchNormCudaTest : public CudaKernelTest {};

TEST_F(SyncBatchNormCudaTest, ForwardAndBackwardMatchTheCpuKernels) {
  std::mt19937_64 rng(41);
  struct Case {
    int world;
    Shape x;  // one rank's
    float offset;
  };
  for (const Case& t : {Case{3, Shape{2, 3, 5, 7}, 0.0f}, Case{2, Shape{1, 16, 9, 9}, 50.0f},
                        Case{1, Shape{2, 4, 20, 21}, 0.0f}, Case{4, Shape{1, 2, 1, 1}, 0.0f},
                        Case{2, Shape{3, 5, 1, 3}, -10.0f}}) {
    SCOPED_TRACE(absl::StrCat(t.world, " ranks of x ", t.x.ToString(), " offset ", t.offset));
    const int64_t c = t.x[1];
    const Shape c_shape{c}, stats_shape{t.world, 4, c};
    const Tensor gamma = RandomTensor(c_shape, rng), beta = RandomTensor(c_shape, rng);
    const Tensor rm0 = RandomTensor(c_shape, rng), rv0 = RandomTensor(c_shape, rng, 0.5f, 2.0f);
    std::vector<Tensor> xs, dys;
    for (int r = 0; r < t.world; ++r) {
      xs.push_back(RandomTensor(t.x, rng, t.offset - 1.0f, t.offset + 1.0f));
      dys.push_back(RandomTensor(t.x, rng));
    }
    // Forward statistics: each rank's buffer, then the sum.
    std::vector<Tensor> cpu_parts, cuda_parts;
    for (int r = 0; r < t.world; ++r) {
      cpu_parts.push_back(EmptyF32(stats_shape));
      ASSERT_TRUE(cpu::BatchNorm2dLocalStats(xs[r], r, cpu_parts.back()).ok());
      const Tensor d_stats = DeviceEmpty(stats_shape);
      ASSERT_TRUE(BatchNorm2dLocalStats(stream(), ToDevice(xs[r]), r, d_stats).ok());
      cuda_parts.push_back(ToHost(d_stats));
      ExpectRelativeError(cuda_parts.back(), cpu_parts.back(), 1e-6, "stats");
    }
    const Tensor cpu_stats = SumOf(cpu_parts), cuda_stats = SumOf(cuda_parts);
    const Tensor d_gamma = ToDevice(gamma), d_beta = ToDevice(beta);
    std::vector<Tensor> cpu_gparts, cuda_gparts;
    std::vector<Tensor> means, rstds, d_means, d_rstds;
    for (int r = 0; r < t.world; ++r) {
      SCOPED_TRACE(absl::StrCat("rank ", r));
      Tensor y = EmptyF32(t.x), mean = EmptyF32(c_shape), rstd = EmptyF32(c_shape);
      Tensor rm = CopyOf(rm0), rv = CopyOf(rv0);
      ASSERT_TRUE(cpu::BatchNorm2dSyncedForward(xs[r], gamma, beta, cpu_stats, 1e-5f, y, mean,
                                                rstd, rm, rv, 0.1f)
                      .ok());
      const Tensor d_y = DeviceEmpty(t.x), d_mean = DeviceEmpty(c_shape);
      const Tensor d_rstd = DeviceEmpty(c_shape), d_rm = ToDevice(rm0), d_rv = ToDevice(rv0);
      ASSERT_TRUE(BatchNorm2dSyncedForward(stream(), ToDevice(xs[r]), d_gamma, d_beta,
                                           ToDevice(cuda_stats), 1e-5f, d_y, d_mean, d_rstd, d_rm,
                                           d_rv, 0.1f)
                      .ok());
      ExpectRelativeError(ToHost(d_y), y, 1e-5, "y");
      ExpectRelativeError(ToHost(d_mean), mean, 1e-6, "save_mean");
      ExpectRelativeError(ToHost(d_rstd), rstd, 1e-5, "save_rstd");
      ExpectRelativeError(ToHost(d_rm), rm, 1e-6, "running_mean");
      ExpectRelativeError(ToHost(d_rv), rv, 1e-5, "running_var");
      // The backward's local part, from the CPU's saved statistics on both sides.
      Tensor dg = EmptyF32(c_shape), db = EmptyF32(c_shape);
      cpu_gparts.push_back(EmptyF32(stats_shape));
      ASSERT_TRUE(
          cpu::BatchNorm2dLocalGradStats(xs[r], mean, rstd, dys[r], r, cpu_gparts.back(), dg, db)
              .ok());
      const Tensor d_mean_cpu = ToDevice(mean), d_rstd_cpu = ToDevice(rstd);
      const Tensor d_gs = DeviceEmpty(stats_shape), d_dg = DeviceEmpty(c_shape);
      const Tensor d_db = DeviceEmpty(c_shape);
      ASSERT_TRUE(BatchNorm2dLocalGradStats(stream(), ToDevice(xs[r]), d_mean_cpu, d_rstd_cpu,
                                            ToDevice(dys[r]), r, d_gs, d_dg, d_db)
                      .ok());
      cuda_gparts.push_back(ToHost(d_gs));
      ExpectRelativeError(cuda_gparts.back(), cpu_gparts.back(), 1e-5, "grad_stats");
      ExpectRelativeError(ToHost(d_dg), dg, 1e-5, "dgamma share");
      ExpectRelativeError(ToHost(d_db), db, 1e-5, "dbeta share");
      means.push_back(mean);
      rstds.push_back(rstd);
    }
    const Tensor cpu_gstats = SumOf(cpu_gparts), cuda_gstats = SumOf(cuda_gparts);
    for (int r = 0; r < t.world; ++r) {
      SCOPED_TRACE(absl::StrCat("rank ", r));
      Tensor dx = EmptyF32(t.x);
      ASSERT_TRUE(cpu::BatchNorm2dSyncedBackward(xs[r], gamma, means[r], rstds[r], dys[r],
                                                 cpu_gstats, dx)
                      .ok());
      const Tensor d_dx = DeviceEmpty(t.x);
      ASSERT_TRUE(BatchNorm2dSyncedBackward(stream(), ToDevice(xs[r]), d_gamma,
                                            ToDevice(means[r]), ToDevice(rstds[r]),
                                            ToDevice(dys[r]), ToDevice(cuda_gstats), d_dx)
                      .ok());
      ExpectRelativeError(ToHost(d_dx), dx, 1e-5, "dx");
    }
    // grad_stats undefined: dgamma and dbeta only.
    Tensor dg = EmptyF32(c_shape), db = EmptyF32(c_shape);
    ASSERT_TRUE(
        cpu::BatchNorm2dLocalGradStats(xs[0], means[0], rstds[0], dys[0], 0, Tensor(), dg, db)
            .ok());
    const Tensor d_dg = DeviceEmpty(c_shape), d_db = DeviceEmpty(c_shape);
    ASSERT_TRUE(BatchNorm2dLocalGradStats(stream(), ToDevice(xs[0]), ToDevice(means[0]),
                                          ToDevice(rstds[0]), ToDevice(dys[0]), 0, Tensor(), d_dg,
                                          d_db)
                    .ok());
    ExpectRelativeError(ToHost(d_dg), dg, 1e-5, "dgamma without grad_stats");
    ExpectRelativeError(ToHost(d_db), db, 1e-5, "dbeta without grad_stats");
  }
}

// The launchers check their arguments before they touch the device, so this runs anywhere: a
// device tensor here is a CUDA-tagged view of host bytes that no kernel ever reads.
TEST(SyncBatchNormCudaChecks, RefuseHostTensorsWrongShapesAndDTypes) {
  testing::CudaTaggedViews on_cuda;
  const Tensor x = on_cuda(Shape{2, 3, 4, 4}), c = on_cuda(Shape{3});
  const Tensor stats = on_cuda(Shape{2, 4, 3});
  const auto kBad = absl::StatusCode::kInvalidArgument;
  ExpectStatus(BatchNorm2dLocalStats(nullptr, EmptyF32(x.shape()), 0, stats), kBad,
               {"BatchNorm2dLocalStats", "x", "not on a CUDA device"});
  ExpectStatus(BatchNorm2dLocalStats(nullptr, x, 0, on_cuda(Shape{2, 4, 5})), kBad,
               {"BatchNorm2dLocalStats", "stats", "expected (world, 4, 3)"});
  ExpectStatus(BatchNorm2dLocalStats(nullptr, x, 2, stats), kBad,
               {"BatchNorm2dLocalStats", "rank 2", "world of 2"});
  ExpectStatus(BatchNorm2dLocalStats(nullptr, x, 0, EmptyF32(Shape{2, 4, 3})), kBad,
               {"BatchNorm2dLocalStats", "stats", "not on a CUDA device"});
  ExpectStatus(BatchNorm2dSyncedForward(nullptr, x, c, on_cuda(Shape{3}, DType::kBF16), stats,
                                        1e-5f, x, c, c),
               kBad, {"BatchNorm2dSyncedForward", "beta"});
  ExpectStatus(BatchNorm2dSyncedForward(nullptr, x, c, c, stats, 1e-5f, x, c, c, c, Tensor()),
               kBad, {"BatchNorm2dSyncedForward", "running_mean and running_var"});
  ExpectStatus(BatchNorm2dSyncedForward(nullptr, x, c, c, stats, 1e-5f, on_cuda(Shape{2, 3, 4}),
                                        c, c),
               kBad, {"BatchNorm2dSyncedForward", "y"});
  ExpectStatus(BatchNorm2dLocalGradStats(nullptr, x, c, c, on_cuda(Shape{2, 3, 4, 3}), 0, stats,
                                         c, c),
               kBad, {"BatchNorm2dLocalGradStats", "dy"});
  ExpectStatus(BatchNorm2dLocalGradStats(nullptr, x, c, c, x, 0, stats, on_cuda(Shape{2}), c),
               kBad, {"BatchNorm2dLocalGradStats", "dgamma"});
  ExpectStatus(BatchNorm2dLocalGradStats(nullptr, x, c, EmptyF32(Shape{3}), x, 0, stats, c, c),
               kBad, {"BatchNorm2dLocalGradStats", "save_rstd", "not on a CUDA device"});
  ExpectStatus(BatchNorm2dSyncedBackward(nullptr, x, c, c, c, x, on_cuda(Shape{2, 3, 3}), x), kBad,
               {"BatchNorm2dSyncedBackward", "grad_stats"});
  ExpectStatus(BatchNorm2dSyncedBackward(nullptr, x, c, c, c, x, stats, EmptyF32(x.shape())),
               kBad, {"BatchNorm2dSyncedBackward", "dx", "not on a CUDA device"});
}

}  // namespace
}  // namespace strata::cuda
