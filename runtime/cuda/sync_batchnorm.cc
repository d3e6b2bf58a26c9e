#include "runtime/cuda/sync_batchnorm.h"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/sync_batchnorm_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

float* OrNull(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

absl::Status CheckOptionalC(absl::string_view op, absl::string_view name, const Tensor& t,
                            const Shape& c) {
  return t.defined() ? CheckCudaF32(op, name, t, c) : absl::OkStatus();
}

// stats (W, 4, C) for x's C channels, with rank in [0, W).
absl::Status CheckStats(absl::string_view op, absl::string_view name, const Tensor& stats,
                        int64_t c, int rank) {
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, name, stats));
  if (stats.rank() != 3 || stats.dim(0) < 1 || stats.dim(1) != 4 || stats.dim(2) != c) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", stats.ToString(),
                                                   ", expected (world, 4, ", c, ")"));
  }
  if (rank < 0 || rank >= stats.dim(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": rank ", rank, " is outside the world of ", stats.dim(0)));
  }
  return absl::OkStatus();
}

absl::Status CheckX(absl::string_view op, const Tensor& x) {
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "x", x));
  return CheckRank(op, "x", x, 4);
}

// As the CPU's internal::CheckTrainForwardArgs.
absl::Status CheckTrainForwardArgs(absl::string_view op, const Shape& c, const Tensor& save_mean,
                                   const Tensor& save_rstd, const Tensor& running_mean,
                                   const Tensor& running_var, float eps, float momentum) {
  STRATA_RETURN_IF_ERROR(CheckOptionalC(op, "save_mean", save_mean, c));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(op, "save_rstd", save_rstd, c));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(op, "running_mean", running_mean, c));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(op, "running_var", running_var, c));
  if (running_mean.defined() != running_var.defined()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": running_mean and running_var must be both defined or both not"));
  }
  if (!(eps > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": eps = ", eps, " must be > 0"));
  }
  if (!(momentum >= 0 && momentum <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": momentum = ", momentum, " must be in [0, 1]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status BatchNorm2dLocalStats(CUstream_st* stream, const Tensor& x, int rank,
                                   const Tensor& stats) {
  constexpr char kOp[] = "BatchNorm2dLocalStats";
  STRATA_RETURN_IF_ERROR(CheckX(kOp, x));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  STRATA_RETURN_IF_ERROR(CheckStats(kOp, "stats", stats, c, rank));
  if (n * hw < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": x is ", x.shape().ToString(), ", expected values in every channel"));
  }
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
  STRATA_RETURN_IF_ERROR(CheckX(kOp, x));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "gamma", gamma, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "beta", beta, c_shape));
  STRATA_RETURN_IF_ERROR(CheckStats(kOp, "stats", stats, x.dim(1), 0));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "y", y, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckTrainForwardArgs(kOp, c_shape, save_mean, save_rstd, running_mean,
                                               running_var, eps, momentum));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3), world = stats.dim(0);
  if (world * n * hw < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": x is ", x.shape().ToString(), " on ", world,
        " ranks, expected more than 1 value per channel (N * H * W) for batch statistics"));
  }
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
  STRATA_RETURN_IF_ERROR(CheckX(kOp, x));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "save_mean", save_mean, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "save_rstd", save_rstd, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "dy", dy, x.shape()));
  if (grad_stats.defined()) {
    STRATA_RETURN_IF_ERROR(CheckStats(kOp, "grad_stats", grad_stats, x.dim(1), rank));
  }
  STRATA_RETURN_IF_ERROR(CheckOptionalC(kOp, "dgamma", dgamma, c_shape));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(kOp, "dbeta", dbeta, c_shape));
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
  STRATA_RETURN_IF_ERROR(CheckX(kOp, x));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "gamma", gamma, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "save_mean", save_mean, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "save_rstd", save_rstd, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "dy", dy, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckStats(kOp, "grad_stats", grad_stats, x.dim(1), 0));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "dx", dx, x.shape()));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  return CudaLaunchStatus(
      internal::LaunchBatchNorm2dSyncedBackward(
          x.data<float>(), gamma.data<float>(), save_mean.data<float>(), save_rstd.data<float>(),
          dy.data<float>(), grad_stats.data<float>(), grad_stats.dim(0), dx.data<float>(), n, c,
          hw, stream),
      kOp);
}

}  // namespace strata::cuda
