// The argument checks of the BatchNorm kernels (batchnorm.cc, sync_batchnorm.cc), shared by the
// CPU kernels and their CUDA launchers (Note [one argument check per kernel] in kernel_checks.h):
// errors name the kernel and the argument. `f32` checks one f32 contiguous tensor on the caller's
// device (CheckF32Contiguous or CheckCudaF32).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// An optional per-channel tensor: undefined, or contiguous f32 of shape `c`.
inline absl::Status CheckOptionalC(TensorCheck f32, absl::string_view op, absl::string_view name,
                                   const Tensor& t, const Shape& c) {
  return t.defined() ? CheckWithShape(f32, op, name, t, c) : absl::OkStatus();
}

// The forward's optional outputs (per channel), the running statistics (both or neither), eps
// and momentum.
inline absl::Status CheckTrainForwardArgs(TensorCheck f32, absl::string_view op, const Shape& c,
                                          const Tensor& save_mean, const Tensor& save_rstd,
                                          const Tensor& running_mean, const Tensor& running_var,
                                          float eps, float momentum) {
  STRATA_RETURN_IF_ERROR(CheckOptionalC(f32, op, "save_mean", save_mean, c));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(f32, op, "save_rstd", save_rstd, c));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(f32, op, "running_mean", running_mean, c));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(f32, op, "running_var", running_var, c));
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

// x (N, C, H, W).
inline absl::Status CheckBatchNormX(TensorCheck f32, absl::string_view op, const Tensor& x) {
  STRATA_RETURN_IF_ERROR(f32(op, "x", x));
  return CheckRank(op, "x", x, 4);
}

// The forwards' x (N, C, H, W), gamma and beta (C).
inline absl::Status CheckBatchNormAffine(TensorCheck f32, absl::string_view op, const Tensor& x,
                                         const Tensor& gamma, const Tensor& beta) {
  STRATA_RETURN_IF_ERROR(CheckBatchNormX(f32, op, x));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "gamma", gamma, c_shape));
  return CheckWithShape(f32, op, "beta", beta, c_shape);
}

// BatchNorm2dTrainForward.
inline absl::Status CheckBatchNorm2dTrainForward(TensorCheck f32, const Tensor& x,
                                                 const Tensor& gamma, const Tensor& beta,
                                                 float eps, const Tensor& y,
                                                 const Tensor& save_mean, const Tensor& save_rstd,
                                                 const Tensor& running_mean,
                                                 const Tensor& running_var, float momentum) {
  constexpr char kOp[] = "BatchNorm2dTrainForward";
  STRATA_RETURN_IF_ERROR(CheckBatchNormAffine(f32, kOp, x, gamma, beta));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "y", y, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckTrainForwardArgs(f32, kOp, c_shape, save_mean, save_rstd,
                                               running_mean, running_var, eps, momentum));
  if (x.dim(0) * x.dim(2) * x.dim(3) < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": x is ", x.shape().ToString(),
        ", expected more than 1 value per channel (N * H * W) for batch statistics"));
  }
  return absl::OkStatus();
}

// The backwards' x (N, C, H, W), gamma and the saved statistics (C), and dy like x.
inline absl::Status CheckBatchNormBackwardInputs(TensorCheck f32, absl::string_view op,
                                                 const Tensor& x, const Tensor& gamma,
                                                 const Tensor& save_mean, const Tensor& save_rstd,
                                                 const Tensor& dy) {
  STRATA_RETURN_IF_ERROR(CheckBatchNormX(f32, op, x));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "gamma", gamma, c_shape));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "save_mean", save_mean, c_shape));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "save_rstd", save_rstd, c_shape));
  return CheckWithShape(f32, op, "dy", dy, x.shape());
}

// BatchNorm2dTrainBackward.
inline absl::Status CheckBatchNorm2dTrainBackward(TensorCheck f32, const Tensor& x,
                                                  const Tensor& gamma, const Tensor& save_mean,
                                                  const Tensor& save_rstd, const Tensor& dy,
                                                  const Tensor& dx, const Tensor& dgamma,
                                                  const Tensor& dbeta) {
  constexpr char kOp[] = "BatchNorm2dTrainBackward";
  STRATA_RETURN_IF_ERROR(
      CheckBatchNormBackwardInputs(f32, kOp, x, gamma, save_mean, save_rstd, dy));
  const Shape c_shape{x.dim(1)};
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dx", dx, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(f32, kOp, "dgamma", dgamma, c_shape));
  return CheckOptionalC(f32, kOp, "dbeta", dbeta, c_shape);
}

// The frozen kernels' common arguments: x (N, C, H, W), gamma and the running statistics (C),
// eps. (The CPU kernel also reads running_var's values, which a CUDA launcher cannot.)
inline absl::Status CheckBatchNormFrozenArgs(TensorCheck f32, absl::string_view op,
                                             const Tensor& x, const Tensor& gamma,
                                             const Tensor& mean, const Tensor& var, float eps) {
  STRATA_RETURN_IF_ERROR(CheckBatchNormX(f32, op, x));
  const Shape c{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "gamma", gamma, c));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "running_mean", mean, c));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "running_var", var, c));
  if (!(eps > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": eps = ", eps, " must be > 0"));
  }
  return absl::OkStatus();
}

// The frozen backward's dy, dx (optional) like x (or dy, where x is undefined), and the optional
// per-channel gradients.
inline absl::Status CheckBatchNormFrozenGrads(TensorCheck f32, absl::string_view op,
                                              const Tensor& like_x, const Tensor& dy,
                                              const Tensor& dx, const Tensor& dgamma,
                                              const Tensor& dbeta) {
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "dy", dy, like_x.shape()));
  const Shape c_shape{like_x.dim(1)};
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "dx", dx, like_x.shape()));
  STRATA_RETURN_IF_ERROR(CheckOptionalC(f32, op, "dgamma", dgamma, c_shape));
  return CheckOptionalC(f32, op, "dbeta", dbeta, c_shape);
}

// stats (W, 4, C) for x's C channels, with rank in [0, W).
inline absl::Status CheckSyncStats(TensorCheck f32, absl::string_view op, absl::string_view name,
                                   const Tensor& stats, int64_t c, int rank) {
  STRATA_RETURN_IF_ERROR(f32(op, name, stats));
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

// BatchNorm2dLocalStats.
inline absl::Status CheckBatchNorm2dLocalStats(TensorCheck f32, const Tensor& x, int rank,
                                               const Tensor& stats) {
  constexpr char kOp[] = "BatchNorm2dLocalStats";
  STRATA_RETURN_IF_ERROR(CheckBatchNormX(f32, kOp, x));
  STRATA_RETURN_IF_ERROR(CheckSyncStats(f32, kOp, "stats", stats, x.dim(1), rank));
  if (x.dim(0) * x.dim(2) * x.dim(3) < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": x is ", x.shape().ToString(), ", expected values in every channel"));
  }
  return absl::OkStatus();
}

// BatchNorm2dSyncedForward.
inline absl::Status CheckBatchNorm2dSyncedForward(TensorCheck f32, const Tensor& x,
                                                  const Tensor& gamma, const Tensor& beta,
                                                  const Tensor& stats, float eps, const Tensor& y,
                                                  const Tensor& save_mean, const Tensor& save_rstd,
                                                  const Tensor& running_mean,
                                                  const Tensor& running_var, float momentum) {
  constexpr char kOp[] = "BatchNorm2dSyncedForward";
  STRATA_RETURN_IF_ERROR(CheckBatchNormAffine(f32, kOp, x, gamma, beta));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckSyncStats(f32, kOp, "stats", stats, x.dim(1), 0));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "y", y, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckTrainForwardArgs(f32, kOp, c_shape, save_mean, save_rstd,
                                               running_mean, running_var, eps, momentum));
  const int64_t world = stats.dim(0);
  if (world * x.dim(0) * x.dim(2) * x.dim(3) < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": x is ", x.shape().ToString(), " on ", world,
        " ranks, expected more than 1 value per channel (N * H * W) for batch statistics"));
  }
  return absl::OkStatus();
}

// BatchNorm2dLocalGradStats.
inline absl::Status CheckBatchNorm2dLocalGradStats(TensorCheck f32, const Tensor& x,
                                                   const Tensor& save_mean,
                                                   const Tensor& save_rstd, const Tensor& dy,
                                                   int rank, const Tensor& grad_stats,
                                                   const Tensor& dgamma, const Tensor& dbeta) {
  constexpr char kOp[] = "BatchNorm2dLocalGradStats";
  STRATA_RETURN_IF_ERROR(CheckBatchNormX(f32, kOp, x));
  const Shape c_shape{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "save_mean", save_mean, c_shape));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "save_rstd", save_rstd, c_shape));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dy", dy, x.shape()));
  if (grad_stats.defined()) {
    STRATA_RETURN_IF_ERROR(CheckSyncStats(f32, kOp, "grad_stats", grad_stats, x.dim(1), rank));
  }
  STRATA_RETURN_IF_ERROR(CheckOptionalC(f32, kOp, "dgamma", dgamma, c_shape));
  return CheckOptionalC(f32, kOp, "dbeta", dbeta, c_shape);
}

// BatchNorm2dSyncedBackward.
inline absl::Status CheckBatchNorm2dSyncedBackward(TensorCheck f32, const Tensor& x,
                                                   const Tensor& gamma, const Tensor& save_mean,
                                                   const Tensor& save_rstd, const Tensor& dy,
                                                   const Tensor& grad_stats, const Tensor& dx) {
  constexpr char kOp[] = "BatchNorm2dSyncedBackward";
  STRATA_RETURN_IF_ERROR(
      CheckBatchNormBackwardInputs(f32, kOp, x, gamma, save_mean, save_rstd, dy));
  STRATA_RETURN_IF_ERROR(CheckSyncStats(f32, kOp, "grad_stats", grad_stats, x.dim(1), 0));
  return CheckWithShape(f32, kOp, "dx", dx, x.shape());
}

}  // namespace strata::cpu::internal
