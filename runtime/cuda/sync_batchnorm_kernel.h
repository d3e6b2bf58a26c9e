// The synchronized BatchNorm2d kernels (sync_batchnorm_kernel.cu): plain types, see
// cuda_status.h. x, y, dy, dx are contiguous f32 (n, c, hw) on the device; stats and grad_stats
// (world, 4, c); per-channel arrays c floats; a nullptr output is skipped. Each returns the
// launch's cudaError_t.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// n * hw >= 1; writes all of stats (row `rank`, zeros elsewhere).
int LaunchBatchNorm2dLocalStats(const float* x, int64_t n, int64_t c, int64_t hw, int64_t world,
                                int64_t rank, float* stats, CUstream_st* stream);

int LaunchBatchNorm2dSyncedForward(const float* x, const float* gamma, const float* beta,
                                   const float* stats, int64_t world, float eps, float* y,
                                   float* save_mean, float* save_rstd, float* running_mean,
                                   float* running_var, float momentum, int64_t n, int64_t c,
                                   int64_t hw, CUstream_st* stream);

// grad_stats may be nullptr; when not, all of it is written (row `rank`, zeros elsewhere).
int LaunchBatchNorm2dLocalGradStats(const float* x, const float* save_mean,
                                    const float* save_rstd, const float* dy, int64_t world,
                                    int64_t rank, float* grad_stats, float* dgamma, float* dbeta,
                                    int64_t n, int64_t c, int64_t hw, CUstream_st* stream);

int LaunchBatchNorm2dSyncedBackward(const float* x, const float* gamma, const float* save_mean,
                                    const float* save_rstd, const float* dy,
                                    const float* grad_stats, int64_t world, float* dx, int64_t n,
                                    int64_t c, int64_t hw, CUstream_st* stream);

}  // namespace strata::cuda::internal
