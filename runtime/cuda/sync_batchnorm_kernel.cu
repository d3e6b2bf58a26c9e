// Synchronized BatchNorm2d on the device: one block per channel (grid-stride over the channels),
// with the per-channel arithmetic of batchnorm_channel.cuh and the rank merge of the CPU kernel
// (runtime/cpu/sync_batchnorm.h, Note [exact sums over the ranks]): values in double written as
// hi/lo float pairs into the rank's row, merged in rank order in double. The Local* kernels write
// their whole (W, 4, C) buffer (zeros outside the rank's row), so no separate memset is needed.
#include <cmath>

#include "runtime/cuda/batchnorm_channel.cuh"
#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/sync_batchnorm_kernel.h"

namespace strata::cuda::internal {
namespace {

constexpr int64_t kMaxChannelBlocks = 65535;

int ChannelBlocks(int64_t c) { return static_cast<int>(std::min(c, kMaxChannelBlocks)); }

__device__ __forceinline__ float Hi(double v) { return static_cast<float>(v); }
__device__ __forceinline__ float Lo(double v) {
  const float hi = static_cast<float>(v);
  return isfinite(hi) ? static_cast<float>(v - static_cast<double>(hi)) : 0.0f;
}
__device__ __forceinline__ double Get(const float* s, int64_t c, int64_t r, int64_t j,
                                      int64_t ch) {
  return static_cast<double>(s[(r * 4 + j) * c + ch]) +
         static_cast<double>(s[(r * 4 + j + 1) * c + ch]);
}

// Column ch of a (world, 4, c) buffer: row `rank` = [hi(a), lo(a), hi(b), lo(b)], others 0.
__device__ __forceinline__ void PutColumn(float* s, int64_t world, int64_t rank, int64_t c,
                                          int64_t ch, double a, double b) {
  for (int64_t r = 0; r < world; ++r) {
    const bool mine = r == rank;
    s[(r * 4 + 0) * c + ch] = mine ? Hi(a) : 0.0f;
    s[(r * 4 + 1) * c + ch] = mine ? Lo(a) : 0.0f;
    s[(r * 4 + 2) * c + ch] = mine ? Hi(b) : 0.0f;
    s[(r * 4 + 3) * c + ch] = mine ? Lo(b) : 0.0f;
  }
}

__global__ void LocalStatsKernel(const float* __restrict__ x, int64_t n, int64_t c, int64_t hw,
                                 int64_t world, int64_t rank, float* __restrict__ stats) {
  __shared__ double shared[kWarp];
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const ChannelMoments m = BlockChannelMoments(x, n, c, hw, ch, shared);
    if (threadIdx.x == 0) PutColumn(stats, world, rank, c, ch, m.mean, m.var);
  }
}

// y may be x (no __restrict__ on either).
__global__ void SyncedForwardKernel(const float* x, const float* __restrict__ gamma,
                                    const float* __restrict__ beta,
                                    const float* __restrict__ stats, int64_t world, float eps,
                                    float* y, float* __restrict__ save_mean,
                                    float* __restrict__ save_rstd,
                                    float* __restrict__ running_mean,
                                    float* __restrict__ running_var, float momentum, int64_t n,
                                    int64_t c, int64_t hw) {
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    // Chan's merge of W equal-sized parts, in rank order; every thread computes the same values.
    double mean = 0.0;
    for (int64_t r = 0; r < world; ++r) mean += Get(stats, c, r, 0, ch);
    mean /= static_cast<double>(world);
    double var = 0.0;
    for (int64_t r = 0; r < world; ++r) {
      const double d = Get(stats, c, r, 0, ch) - mean;
      var += Get(stats, c, r, 2, ch) + d * d;
    }
    var = fmax(0.0, var / static_cast<double>(world));
    const double rstd = 1.0 / sqrt(var + static_cast<double>(eps));
    const float mean_f = static_cast<float>(mean);
    if (threadIdx.x == 0) {
      if (save_mean != nullptr) save_mean[ch] = mean_f;
      if (save_rstd != nullptr) save_rstd[ch] = static_cast<float>(rstd);
      if (running_mean != nullptr) {
        UpdateRunning(&running_mean[ch], &running_var[ch], mean, var, world * n * hw, momentum);
      }
    }
    BlockNormalize(x, y, mean_f, static_cast<float>(static_cast<double>(gamma[ch]) * rstd),
                   beta[ch], n, c, hw, ch);
  }
}

__global__ void LocalGradStatsKernel(const float* __restrict__ x,
                                     const float* __restrict__ save_mean,
                                     const float* __restrict__ save_rstd,
                                     const float* __restrict__ dy, int64_t world, int64_t rank,
                                     float* __restrict__ grad_stats, float* __restrict__ dgamma,
                                     float* __restrict__ dbeta, int64_t n, int64_t c, int64_t hw) {
  __shared__ double shared[kWarp];
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const ChannelGradSums sums = BlockChannelGradSums(x, dy, save_mean[ch], n, c, hw, ch, shared);
    if (threadIdx.x == 0) {
      if (dgamma != nullptr) {
        dgamma[ch] = static_cast<float>(sums.dy_xc * static_cast<double>(save_rstd[ch]));
      }
      if (dbeta != nullptr) dbeta[ch] = static_cast<float>(sums.dy);
      if (grad_stats != nullptr) PutColumn(grad_stats, world, rank, c, ch, sums.dy, sums.dy_xc);
    }
  }
}

__global__ void SyncedBackwardKernel(const float* __restrict__ x, const float* __restrict__ gamma,
                                     const float* __restrict__ save_mean,
                                     const float* __restrict__ save_rstd,
                                     const float* __restrict__ dy,
                                     const float* __restrict__ grad_stats, int64_t world,
                                     float* __restrict__ dx, int64_t n, int64_t c, int64_t hw) {
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    ChannelGradSums sums{0.0, 0.0};  // over every rank, in rank order
    for (int64_t r = 0; r < world; ++r) {
      sums.dy += Get(grad_stats, c, r, 0, ch);
      sums.dy_xc += Get(grad_stats, c, r, 2, ch);
    }
    BlockInputGrad(x, dy, dx, save_mean[ch], gamma[ch], save_rstd[ch], sums,
                   static_cast<double>(world * n * hw), n, c, hw, ch);
  }
}

}  // namespace

int LaunchBatchNorm2dLocalStats(const float* x, int64_t n, int64_t c, int64_t hw, int64_t world,
                                int64_t rank, float* stats, CUstream_st* stream) {
  if (c == 0) return static_cast<int>(cudaSuccess);
  LocalStatsKernel<<<ChannelBlocks(c), kThreads, 0, stream>>>(x, n, c, hw, world, rank, stats);
  return static_cast<int>(cudaGetLastError());
}

int LaunchBatchNorm2dSyncedForward(const float* x, const float* gamma, const float* beta,
                                   const float* stats, int64_t world, float eps, float* y,
                                   float* save_mean, float* save_rstd, float* running_mean,
                                   float* running_var, float momentum, int64_t n, int64_t c,
                                   int64_t hw, CUstream_st* stream) {
  if (c == 0) return static_cast<int>(cudaSuccess);
  SyncedForwardKernel<<<ChannelBlocks(c), kThreads, 0, stream>>>(
      x, gamma, beta, stats, world, eps, y, save_mean, save_rstd, running_mean, running_var,
      momentum, n, c, hw);
  return static_cast<int>(cudaGetLastError());
}

int LaunchBatchNorm2dLocalGradStats(const float* x, const float* save_mean,
                                    const float* save_rstd, const float* dy, int64_t world,
                                    int64_t rank, float* grad_stats, float* dgamma, float* dbeta,
                                    int64_t n, int64_t c, int64_t hw, CUstream_st* stream) {
  if (c == 0) return static_cast<int>(cudaSuccess);
  LocalGradStatsKernel<<<ChannelBlocks(c), kThreads, 0, stream>>>(
      x, save_mean, save_rstd, dy, world, rank, grad_stats, dgamma, dbeta, n, c, hw);
  return static_cast<int>(cudaGetLastError());
}

int LaunchBatchNorm2dSyncedBackward(const float* x, const float* gamma, const float* save_mean,
                                    const float* save_rstd, const float* dy,
                                    const float* grad_stats, int64_t world, float* dx, int64_t n,
                                    int64_t c, int64_t hw, CUstream_st* stream) {
  if (c == 0) return static_cast<int>(cudaSuccess);
  SyncedBackwardKernel<<<ChannelBlocks(c), kThreads, 0, stream>>>(
      x, gamma, save_mean, save_rstd, dy, grad_stats, world, dx, n, c, hw);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
