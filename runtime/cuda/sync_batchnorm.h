// cpu synchronized BatchNorm2d (runtime/cpu/sync_batchnorm.h) on a CUDA device: training mode
// over a batch split among `world` data-parallel ranks, each step split around a sum over the
// ranks that the caller runs (an all-reduce of the (W, 4, C) buffers):
//
//   STRATA_RETURN_IF_ERROR(cuda::BatchNorm2dLocalStats(stream, x, rank, stats));
//   all-reduce stats (sum over the ranks)
//   STRATA_RETURN_IF_ERROR(cuda::BatchNorm2dSyncedForward(stream, x, gamma, beta, stats, 1e-5f, y,
//                                                         mean, rstd, running_mean, running_var,
//                                                         0.1f));
//   STRATA_RETURN_IF_ERROR(cuda::BatchNorm2dLocalGradStats(stream, x, mean, rstd, dy, rank,
//                                                          grad_stats, dgamma, dbeta));
//   all-reduce grad_stats
//   STRATA_RETURN_IF_ERROR(cuda::BatchNorm2dSyncedBackward(stream, x, gamma, mean, rstd, dy,
//                                                          grad_stats, dx));
//
// The buffers hold what the CPU kernels' do, in the same layout (Note [exact sums over the ranks]
// in the CPU header): row `rank` = per-channel values computed in double and stored as hi/lo
// float pairs, every other row zero, so that CPU and CUDA ranks can even be mixed. Per channel,
// one block sums in double in a fixed order; no atomics. Every tensor is contiguous f32 on a
// CUDA device, checked as the CPU kernels check them.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// x (N, C, H, W) -> stats (W, 4, C): row `rank` = [mean hi, mean lo, var hi, var lo] of this
// rank's N * H * W values per channel (biased variance), every other row 0.
absl::Status BatchNorm2dLocalStats(CUstream_st* stream, const Tensor& x, int rank,
                                   const Tensor& stats);

// x (N, C, H, W); gamma, beta (C); stats (W, 4, C) summed over the ranks -> y like x (may alias
// x), save_mean and save_rstd (C; skipped when undefined) of all W * N * H * W values.
// running_mean and running_var (C), when defined, move towards the global mean and unbiased
// variance with `momentum`.
absl::Status BatchNorm2dSyncedForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                      const Tensor& beta, const Tensor& stats, float eps,
                                      const Tensor& y, const Tensor& save_mean,
                                      const Tensor& save_rstd,
                                      const Tensor& running_mean = Tensor(),
                                      const Tensor& running_var = Tensor(),
                                      float momentum = 0.1f);

// x, dy (N, C, H, W); save_mean, save_rstd (C) -> grad_stats (W, 4, C): row `rank` = [sum dy hi,
// lo, sum dy * (x - mean) hi, lo], others 0; dgamma and dbeta (C; skipped when undefined): this
// rank's share. grad_stats may be undefined (no dx wanted).
absl::Status BatchNorm2dLocalGradStats(CUstream_st* stream, const Tensor& x,
                                       const Tensor& save_mean, const Tensor& save_rstd,
                                       const Tensor& dy, int rank, const Tensor& grad_stats,
                                       const Tensor& dgamma, const Tensor& dbeta);

// grad_stats summed over the ranks -> dx like x.
absl::Status BatchNorm2dSyncedBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                                       const Tensor& save_mean, const Tensor& save_rstd,
                                       const Tensor& dy, const Tensor& grad_stats,
                                       const Tensor& dx);

}  // namespace strata::cuda
