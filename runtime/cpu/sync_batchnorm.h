// BatchNorm2d in training mode over a batch split among `world` data-parallel ranks: each rank
// holds N of the W * N rows, and the statistics are those of all W * N rows (PyTorch's
// nn.SyncBatchNorm). Each step is split around a sum over the ranks, which the caller runs
// (an all-reduce; graph/passes/sync_batch_norm.cc):
//
//   // stats (W, 4, C): this rank's row written, every other row zeroed.
//   STRATA_RETURN_IF_ERROR(BatchNorm2dLocalStats(x, rank, stats));
//   all-reduce stats (sum over the ranks)
//   STRATA_RETURN_IF_ERROR(BatchNorm2dSyncedForward(x, gamma, beta, stats, 1e-5f, y, mean, rstd,
//                                                   running_mean, running_var, 0.1f));
//   // backward: grad_stats (W, 4, C) the same way, dgamma and dbeta this rank's share.
//   STRATA_RETURN_IF_ERROR(BatchNorm2dLocalGradStats(x, mean, rstd, dy, rank, grad_stats,
//                                                    dgamma, dbeta));
//   all-reduce grad_stats
//   STRATA_RETURN_IF_ERROR(BatchNorm2dSyncedBackward(x, gamma, mean, rstd, dy, grad_stats, dx));
//
// Note [exact sums over the ranks]
// Every rank writes its per-channel values (local mean and biased variance forward; local sums
// of dy and dy * (x - mean) backward), each computed in double and stored as two floats
// hi = float(v), lo = float(v - hi), into its own row of a zeroed (W, 4, C) buffer. Summing such
// buffers adds each value to zeros only, which is exact in any order, so the all-reduce is an
// exact all-gather and every rank reads the same W double-precision values. Each rank then
// merges them in rank order in double: the mean of the W means, and the variance as Chan et
// al.'s parallel merge, mean of the variances + variance of the means (the ranks' counts are
// equal), never E[x^2] - E[x]^2. The global statistics are as accurate as the one-process
// kernel's (runtime/cpu/batchnorm.h) and bit-identical on every rank. The cost is W * 4 * C
// floats per layer and direction instead of 2 * C.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// x (N, C, H, W) -> stats (W, 4, C): row `rank` = [mean hi, mean lo, var hi, var lo] of this
// rank's N * H * W values per channel (biased variance), every other row 0.
absl::Status BatchNorm2dLocalStats(const Tensor& x, int rank, const Tensor& stats);

// x (N, C, H, W); gamma, beta (C); stats (W, 4, C) summed over the ranks -> y like x, save_mean
// and save_rstd (C; skipped when undefined) of all W * N * H * W values; y = (x - mean) * rstd *
// gamma + beta. running_mean and running_var (C), when defined, move towards the global mean and
// unbiased variance with `momentum`, as BatchNorm2dTrainForward's do.
absl::Status BatchNorm2dSyncedForward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& stats, float eps, const Tensor& y,
                                      const Tensor& save_mean, const Tensor& save_rstd,
                                      const Tensor& running_mean = Tensor(),
                                      const Tensor& running_var = Tensor(),
                                      float momentum = 0.1f);

// x, dy (N, C, H, W); save_mean, save_rstd (C) from BatchNorm2dSyncedForward -> grad_stats
// (W, 4, C): row `rank` = [sum dy hi, lo, sum dy * (x - mean) hi, lo] over this rank's values,
// others 0; dgamma and dbeta (C; skipped when undefined): this rank's share, which summed over
// the ranks is the gradient of gamma and beta. grad_stats may be undefined (no dx wanted).
absl::Status BatchNorm2dLocalGradStats(const Tensor& x, const Tensor& save_mean,
                                       const Tensor& save_rstd, const Tensor& dy, int rank,
                                       const Tensor& grad_stats, const Tensor& dgamma,
                                       const Tensor& dbeta);

// grad_stats summed over the ranks -> dx like x: gamma * rstd * (dy - mean(dy) - xhat *
// mean(dy * xhat)), the means over all W * N * H * W values.
absl::Status BatchNorm2dSyncedBackward(const Tensor& x, const Tensor& gamma,
                                       const Tensor& save_mean, const Tensor& save_rstd,
                                       const Tensor& dy, const Tensor& grad_stats,
                                       const Tensor& dx);

}  // namespace strata::cpu
