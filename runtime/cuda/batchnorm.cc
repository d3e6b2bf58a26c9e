#include "runtime/cuda/batchnorm.h"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/batchnorm_kernel.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

float* OrNull(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

absl::Status CheckOptionalC(absl::string_view op, absl::string_view name, const Tensor& t,
                            const Shape& c) {
  return t.defined() ? CheckCudaF32(op, name, t, c) : absl::OkStatus();
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

// The frozen kernels' shared checks (the CPU's CheckArgs, less the read of running_var's values).
absl::Status CheckFrozenArgs(absl::string_view op, const Tensor& x, const Tensor& gamma,
                             const Tensor& mean, const Tensor& var, float eps) {
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "x", x));
  STRATA_RETURN_IF_ERROR(CheckRank(op, "x", x, 4));
  const Shape c{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "gamma", gamma, c));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "running_mean", mean, c));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "running_var", var, c));
  if (!(eps > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": eps = ", eps, " must be > 0"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status BatchNorm2dTrainForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                     const Tensor& beta, float eps, const Tensor& y,
                                     const Tensor& save_mean, const Tensor& save_rstd,
                                     const Tensor& running_mean, const Tensor& running_var,
                                     float momentum) {
  constexpr char kOp[] = "BatchNorm2dTrainForward";
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "x", x));
  STRATA_RETURN_IF_ERROR(CheckRank(kOp, "x", x, 4));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "gamma", gamma, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "beta", beta, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "y", y, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckTrainForwardArgs(kOp, c_shape, save_mean, save_rstd, running_mean,
                                               running_var, eps, momentum));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  if (n * hw < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": x is ", x.shape().ToString(),
        ", expected more than 1 value per channel (N * H * W) for batch statistics"));
  }
  return CudaLaunchStatus(
      internal::LaunchBatchNorm2dTrainForward(
          x.data<float>(), gamma.data<float>(), beta.data<float>(), eps, y.data<float>(),
          OrNull(save_mean), OrNull(save_rstd), OrNull(running_mean), OrNull(running_var),
          momentum, n, c, hw, stream),
      kOp);
}

absl::Status BatchNorm2dTrainBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                      const Tensor& save_mean, const Tensor& save_rstd,
                                      const Tensor& dy, const Tensor& dx, const Tensor& dgamma,
                                      const Tensor& dbeta, cpu::GradMode mode) {
  constexpr char kOp[] = "BatchNorm2dTrainBackward";
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "x", x));
  STRATA_RETURN_IF_ERROR(CheckRank(kOp, "x", x, 4));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "gamma", gamma, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "save_mean", save_mean, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "save_rstd", save_rstd, c_shape));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "dy", dy, x.shape()));
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "dx", dx, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(kOp, "dgamma", dgamma, c_shape));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(kOp, "dbeta", dbeta, c_shape));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  return CudaLaunchStatus(
      internal::LaunchBatchNorm2dTrainBackward(
          x.data<float>(), gamma.data<float>(), save_mean.data<float>(), save_rstd.data<float>(),
          dy.data<float>(), OrNull(dx), OrNull(dgamma), OrNull(dbeta),
          mode == cpu::GradMode::kAccumulate, n, c, hw, stream),
      kOp);
}

absl::Status BatchNorm2dFrozenForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                      const Tensor& beta, const Tensor& running_mean,
                                      const Tensor& running_var, float eps, const Tensor& y) {
  constexpr char kOp[] = "BatchNorm2dFrozenForward";
  STRATA_RETURN_IF_ERROR(CheckFrozenArgs(kOp, x, gamma, running_mean, running_var, eps));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "beta", beta, Shape{x.dim(1)}));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "y", y, x.shape()));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  return CudaLaunchStatus(internal::LaunchBatchNorm2dFrozenForward(
                              x.data<float>(), gamma.data<float>(), beta.data<float>(),
                              running_mean.data<float>(), running_var.data<float>(), eps,
                              y.data<float>(), n, c, hw, stream),
                          kOp);
}

absl::Status BatchNorm2dFrozenBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                       const Tensor& running_mean, const Tensor& running_var,
                                       float eps, const Tensor& dy, const Tensor& dx,
                                       const Tensor& dgamma, const Tensor& dbeta,
                                       cpu::GradMode mode) {
  constexpr char kOp[] = "BatchNorm2dFrozenBackward";
  // Only dgamma reads x; without it x may be undefined, and dy gives the shapes.
  if (dgamma.defined() && !x.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": dgamma needs x"));
  }
  const Tensor& like_x = x.defined() ? x : dy;
  STRATA_RETURN_IF_ERROR(CheckFrozenArgs(kOp, like_x, gamma, running_mean, running_var, eps));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "dy", dy, like_x.shape()));
  const Shape c_shape{like_x.dim(1)};
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "dx", dx, like_x.shape()));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(kOp, "dgamma", dgamma, c_shape));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(kOp, "dbeta", dbeta, c_shape));
  const int64_t n = like_x.dim(0), c = like_x.dim(1), hw = like_x.dim(2) * like_x.dim(3);
  return CudaLaunchStatus(
      internal::LaunchBatchNorm2dFrozenBackward(
          OrNull(x), gamma.data<float>(), running_mean.data<float>(), running_var.data<float>(),
          eps, dy.data<float>(), OrNull(dx), OrNull(dgamma), OrNull(dbeta),
          mode == cpu::GradMode::kAccumulate, n, c, hw, stream),
      kOp);
}

}  // namespace strata::cuda
