// Frozen (inference-mode) BatchNorm2d, as used when fine-tuning: the running statistics are
// constants, so the op is a per-channel affine map and its backward needs no batch statistics.
//
//   STRATA_RETURN_IF_ERROR(BatchNorm2dFrozenForward(x, gamma, beta, mean, var, 1e-5f, y));
//   STRATA_RETURN_IF_ERROR(BatchNorm2dFrozenBackward(x, gamma, mean, var, 1e-5f, dy,
//                                                    dx, Tensor(), dbeta));   // bias-only
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// x (N, C, H, W); gamma, beta, running_mean, running_var (C); y like x.
// y = (x - mean) / sqrt(var + eps) * gamma + beta. y may alias x.
absl::Status BatchNorm2dFrozenForward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& running_mean, const Tensor& running_var,
                                      float eps, const Tensor& y);

// dy like x -> dx like x, dgamma and dbeta (C); any may be undefined (skipped). `mode` applies to
// dgamma and dbeta.
absl::Status BatchNorm2dFrozenBackward(const Tensor& x, const Tensor& gamma,
                                       const Tensor& running_mean, const Tensor& running_var,
                                       float eps, const Tensor& dy, const Tensor& dx,
                                       const Tensor& dgamma, const Tensor& dbeta,
                                       GradMode mode = GradMode::kOverwrite);

}  // namespace strata::cpu
