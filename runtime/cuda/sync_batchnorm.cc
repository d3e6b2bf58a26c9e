#include "runtime/cuda/sync_batchnorm.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/batchnorm_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/sync_batchnorm_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

float* OrNull(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

}  // namespace

absl::Status BatchNorm2dLocalStats(CUstream_st* stream, const Tensor& x, int rank,
                                   const Tensor& stats) {
  constexpr char kOp[] = "BatchNorm2dLocalStats";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBatchNorm2dLocalStats(CheckCudaF32, x, rank, stats));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  return CudaLaunchStatus(internal::LaunchBatchNorm2dLocalStats(x.data<float>(), n, c, hw,
                                                                stats.dim(0), rank,
                                                                stats.data<float>(), stream),
                          kOp);
}

absl::Status BatchNorm2dSyncedForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                      const Tensor& beta, const Tensor& stats, float eps,
                                      const Tensor& y, const Tensor& save_mean,
                                      const Tensor& save_rstd, const Tensor& running_mean,
                                      const Tensor& running_var, float momentum) {
  constexpr char kOp[] = "BatchNorm2dSyncedForward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBatchNorm2dSyncedForward(
      CheckCudaF32, x, gamma, beta, stats, eps, y, save_mean, save_rstd, running_mean, running_var,
      momentum));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3), world = stats.dim(0);
  return CudaLaunchStatus(
      internal::LaunchBatchNorm2dSyncedForward(
          x.data<float>(), gamma.data<float>(), beta.data<float>(), stats.data<float>(), world,
          eps, y.data<float>(), OrNull(save_mean), OrNull(save_rstd), OrNull(running_mean),
          OrNull(running_var), momentum, n, c, hw, stream),
      kOp);
}

absl::Status BatchNorm2dLocalGradStats(CUstream_st* stream, const Tensor& x,
                                       const Tensor& save_mean, const Tensor& save_rstd,
                                       const Tensor& dy, int rank, const Tensor& grad_stats,
                                       const Tensor& dgamma, const Tensor& dbeta) {
  constexpr char kOp[] = "BatchNorm2dLocalGradStats";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBatchNorm2dLocalGradStats(
      CheckCudaF32, x, save_mean, save_rstd, dy, rank, grad_stats, dgamma, dbeta));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  const int64_t world = grad_stats.defined() ? grad_stats.dim(0) : 1;
  return CudaLaunchStatus(internal::LaunchBatchNorm2dLocalGradStats(
                              x.data<float>(), save_mean.data<float>(), save_rstd.data<float>(),
                              dy.data<float>(), world, rank, OrNull(grad_stats), OrNull(dgamma),
                              OrNull(dbeta), n, c, hw, stream),
                          kOp);
}

absl::Status BatchNorm2dSyncedBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                       const Tensor& save_mean, const Tensor& save_rstd,
                                       const Tensor& dy, const Tensor& grad_stats,
                                       const Tensor& dx) {
  constexpr char kOp[] = "BatchNorm2dSyncedBackward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBatchNorm2dSyncedBackward(
      CheckCudaF32, x, gamma, save_mean, save_rstd, dy, grad_stats, dx));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  return CudaLaunchStatus(
      internal::LaunchBatchNorm2dSyncedBackward(
          x.data<float>(), gamma.data<float>(), save_mean.data<float>(), save_rstd.data<float>(),
          dy.data<float>(), grad_stats.data<float>(), grad_stats.dim(0), dx.data<float>(), n, c,
          hw, stream),
      kOp);
}

}  // namespace strata::cuda
