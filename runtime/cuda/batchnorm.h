// cpu BatchNorm2d (runtime/cpu/batchnorm.h) on a CUDA device, in its two modes.
//
// Training mode: normalize with the batch's statistics, save them for the backward, and move the
// running statistics towards them.
//
//   STRATA_RETURN_IF_ERROR(cuda::BatchNorm2dTrainForward(stream, x, gamma, beta, 1e-5f, y, mean,
//                                                        rstd, running_mean, running_var, 0.1f));
//   STRATA_RETURN_IF_ERROR(cuda::BatchNorm2dTrainBackward(stream, x, gamma, mean, rstd, dy, dx,
//                                                         dgamma, dbeta));
//
// Frozen (inference) mode: the running statistics are constants.
//
//   STRATA_RETURN_IF_ERROR(cuda::BatchNorm2dFrozenForward(stream, x, gamma, beta, mean, var,
//                                                         1e-5f, y));
//   STRATA_RETURN_IF_ERROR(cuda::BatchNorm2dFrozenBackward(stream, x, gamma, mean, var, 1e-5f, dy,
//                                                          dx, Tensor(), dbeta));  // bias-only
//
// Every tensor is contiguous f32 on a CUDA device, checked as the CPU kernels check them, with
// one difference: the CPU's frozen kernels refuse a negative or NaN running_var, which lives on
// the device here and is not read back (a negative variance gives NaN outputs instead).
// The statistics are those of the CPU kernels: per channel, one block sums the values in double
// (shifted by the channel's first value) in a fixed order, mean and biased variance as the CPU's,
// rstd = 1 / sqrt(var + eps) in double, the running statistics updated with the unbiased variance
// and r = (1 - momentum) * r + momentum * s. No atomics: results are reproducible run to run.
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// x (N, C, H, W); gamma, beta (C); y like x (may alias x); save_mean, save_rstd (C), written when
// defined: the batch mean and 1 / sqrt(biased variance + eps) per channel, over N * H * W > 1
// values. running_mean and running_var (C), both or neither, are updated in place.
absl::Status BatchNorm2dTrainForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                     const Tensor& beta, float eps, const Tensor& y,
                                     const Tensor& save_mean, const Tensor& save_rstd,
                                     const Tensor& running_mean = Tensor(),
                                     const Tensor& running_var = Tensor(),
                                     float momentum = 0.1f);

// x, dy (N, C, H, W); gamma, save_mean, save_rstd (C) as the forward left them -> dx like x,
// dgamma and dbeta (C); any output may be undefined (skipped). `mode` applies to dgamma, dbeta.
absl::Status BatchNorm2dTrainBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                      const Tensor& save_mean, const Tensor& save_rstd,
                                      const Tensor& dy, const Tensor& dx, const Tensor& dgamma,
                                      const Tensor& dbeta,
                                      cpu::GradMode mode = cpu::GradMode::kOverwrite);

// y = (x - mean) / sqrt(var + eps) * gamma + beta. y may alias x.
absl::Status BatchNorm2dFrozenForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                      const Tensor& beta, const Tensor& running_mean,
                                      const Tensor& running_var, float eps, const Tensor& y);

// dy like x -> dx like x, dgamma and dbeta (C); any may be undefined (skipped). `mode` applies
// to dgamma and dbeta. Only dgamma reads x: without it x may be undefined.
absl::Status BatchNorm2dFrozenBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                       const Tensor& running_mean, const Tensor& running_var,
                                       float eps, const Tensor& dy, const Tensor& dx,
                                       const Tensor& dgamma, const Tensor& dbeta,
                                       cpu::GradMode mode = cpu::GradMode::kOverwrite);

}  // namespace strata::cuda
