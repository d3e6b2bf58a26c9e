#include "runtime/cuda/batchnorm.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/batchnorm_checks.h"
#include "runtime/cuda/batchnorm_kernel.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

float* OrNull(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

}  // namespace

absl::Status BatchNorm2dTrainForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                     const Tensor& beta, float eps, const Tensor& y,
                                     const Tensor& save_mean, const Tensor& save_rstd,
                                     const Tensor& running_mean, const Tensor& running_var,
                                     float momentum) {
  constexpr char kOp[] = "BatchNorm2dTrainForward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBatchNorm2dTrainForward(
      CheckCudaF32, x, gamma, beta, eps, y, save_mean, save_rstd, running_mean, running_var,
      momentum));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
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
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBatchNorm2dTrainBackward(
      CheckCudaF32, x, gamma, save_mean, save_rstd, dy, dx, dgamma, dbeta));
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
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBatchNormFrozenArgs(CheckCudaF32, kOp, x, gamma,
                                                                 running_mean, running_var, eps));
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
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBatchNormFrozenArgs(
      CheckCudaF32, kOp, like_x, gamma, running_mean, running_var, eps));
  STRATA_RETURN_IF_ERROR(
      cpu::internal::CheckBatchNormFrozenGrads(CheckCudaF32, kOp, like_x, dy, dx, dgamma, dbeta));
  const int64_t n = like_x.dim(0), c = like_x.dim(1), hw = like_x.dim(2) * like_x.dim(3);
  return CudaLaunchStatus(
      internal::LaunchBatchNorm2dFrozenBackward(
          OrNull(x), gamma.data<float>(), running_mean.data<float>(), running_var.data<float>(),
          eps, dy.data<float>(), OrNull(dx), OrNull(dgamma), OrNull(dbeta),
          mode == cpu::GradMode::kAccumulate, n, c, hw, stream),
      kOp);
}

}  // namespace strata::cuda
