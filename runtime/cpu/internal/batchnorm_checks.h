// The argument checks that the training-mode BatchNorm kernels (batchnorm.cc, sync_batchnorm.cc)
// share: errors name the kernel and the argument.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// An optional per-channel tensor: undefined, or contiguous f32 of shape `c`.
inline absl::Status CheckOptionalC(absl::string_view op, absl::string_view name, const Tensor& t,
                                   const Shape& c) {
  return t.defined() ? CheckF32Contiguous(op, name, t, c) : absl::OkStatus();
}

// The forward's optional outputs (per channel), the running statistics (both or neither), eps
// and momentum.
inline absl::Status CheckTrainForwardArgs(absl::string_view op, const Shape& c,
                                          const Tensor& save_mean, const Tensor& save_rstd,
                                          const Tensor& running_mean, const Tensor& running_var,
                                          float eps, float momentum) {
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

}  // namespace strata::cpu::internal
