// BatchNorm2d in its two modes.
//
// Training mode (PyTorch's model.train()): normalize with the batch's statistics, save them for
// the backward, and move the running statistics towards them.
//
//   STRATA_RETURN_IF_ERROR(BatchNorm2dTrainForward(x, gamma, beta, 1e-5f, y, mean, rstd,
//                                                  running_mean, running_var, 0.1f));
//   STRATA_RETURN_IF_ERROR(BatchNorm2dTrainBackward(x, gamma, mean, rstd, dy, dx, dgamma, dbeta));
//
// Frozen (inference) mode, as used when fine-tuning and for evaluation: the running statistics
// are constants, so the op is a per-channel affine map and its backward needs no batch
// statistics.
//
//   STRATA_RETURN_IF_ERROR(BatchNorm2dFrozenForward(x, gamma, beta, mean, var, 1e-5f, y));
//   STRATA_RETURN_IF_ERROR(BatchNorm2dFrozenBackward(x, gamma, mean, var, 1e-5f, dy,
//                                                    dx, Tensor(), dbeta));   // bias-only
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// x (N, C, H, W); gamma, beta (C); y like x (may alias x); save_mean, save_rstd (C), written
// when defined: the batch mean and 1 / sqrt(biased variance + eps) per channel, over
// N * H * W > 1 values.
// y = (x - mean) * rstd * gamma + beta. When running_mean and running_var (C) are defined they
// are updated in place as PyTorch does: r = (1 - momentum) * r + momentum * s, with the unbiased
// variance for running_var. Each channel is reduced by one thread in a fixed order (in double),
// so the results do not depend on the thread count.
absl::Status BatchNorm2dTrainForward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                     float eps, const Tensor& y, const Tensor& save_mean,
                                     const Tensor& save_rstd,
                                     const Tensor& running_mean = Tensor(),
                                     const Tensor& running_var = Tensor(),
                                     float momentum = 0.1f);

// x, dy (N, C, H, W); gamma, save_mean, save_rstd (C) as the forward left them -> dx like x,
// dgamma and dbeta (C), through the batch mean and variance; any output may be undefined
// (skipped). `mode` applies to dgamma and dbeta.
absl::Status BatchNorm2dTrainBackward(const Tensor& x, const Tensor& gamma,
                                      const Tensor& save_mean, const Tensor& save_rstd,
                                      const Tensor& dy, const Tensor& dx, const Tensor& dgamma,
                                      const Tensor& dbeta, GradMode mode = GradMode::kOverwrite);

// x (N, C, H, W); gamma, beta, running_mean, running_var (C); y like x.
// y = (x - mean) / sqrt(var + eps) * gamma + beta. y may alias x.
absl::Status BatchNorm2dFrozenForward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& running_mean, const Tensor& running_var,
                                      float eps, const Tensor& y);

// dy like x -> dx like x, dgamma and dbeta (C); any may be undefined (skipped). `mode` applies to
// dgamma and dbeta. Only dgamma reads x: without it x may be undefined (a BatchNorm whose weight
// does not train need not keep its input for the backward).
absl::Status BatchNorm2dFrozenBackward(const Tensor& x, const Tensor& gamma,
                                       const Tensor& running_mean, const Tensor& running_var,
                                       float eps, const Tensor& dy, const Tensor& dx,
                                       const Tensor& dgamma, const Tensor& dbeta,
                                       GradMode mode = GradMode::kOverwrite);

}  // namespace strata::cpu
