// BatchNorm2d on the device. Training mode: one block per channel (grid-stride over the
// channels) computes the channel's statistics in double in a fixed order (batchnorm_channel.cuh),
// then normalizes it, so nothing depends on scheduling and no atomics are used. Frozen mode: the
// forward and dx are elementwise; dgamma and dbeta are one block per channel.
#include "runtime/cuda/batchnorm_channel.cuh"
#include "runtime/cuda/batchnorm_kernel.h"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

constexpr int64_t kMaxChannelBlocks = 65535;

int ChannelBlocks(int64_t c) { return static_cast<int>(std::min(c, kMaxChannelBlocks)); }

// y may be x (no __restrict__ on either).
__global__ void TrainForwardKernel(const float* x, const float* __restrict__ gamma,
                                   const float* __restrict__ beta, float eps, float* y,
                                   float* __restrict__ save_mean, float* __restrict__ save_rstd,
                                   float* __restrict__ running_mean,
                                   float* __restrict__ running_var, float momentum, int64_t n,
                                   int64_t c, int64_t hw) {
  __shared__ double shared[kWarp];
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const ChannelMoments m = BlockChannelMoments(x, n, c, hw, ch, shared);
    const double rstd = 1.0 / sqrt(m.var + static_cast<double>(eps));
    const float mean_f = static_cast<float>(m.mean);
    if (threadIdx.x == 0) {
      if (save_mean != nullptr) save_mean[ch] = mean_f;
      if (save_rstd != nullptr) save_rstd[ch] = static_cast<float>(rstd);
      if (running_mean != nullptr) {
        UpdateRunning(&running_mean[ch], &running_var[ch], m.mean, m.var, n * hw, momentum);
      }
    }
    BlockNormalize(x, y, mean_f, static_cast<float>(static_cast<double>(gamma[ch]) * rstd),
                   beta[ch], n, c, hw, ch);
  }
}

__global__ void TrainBackwardKernel(const float* __restrict__ x, const float* __restrict__ gamma,
                                    const float* __restrict__ save_mean,
                                    const float* __restrict__ save_rstd,
                                    const float* __restrict__ dy, float* __restrict__ dx,
                                    float* __restrict__ dgamma, float* __restrict__ dbeta,
                                    bool accumulate, int64_t n, int64_t c, int64_t hw) {
  __shared__ double shared[kWarp];
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const float mean = save_mean[ch];
    const ChannelGradSums sums = BlockChannelGradSums(x, dy, mean, n, c, hw, ch, shared);
    const double rstd = save_rstd[ch];
    if (threadIdx.x == 0) {
      if (dgamma != nullptr) {
        dgamma[ch] = (accumulate ? dgamma[ch] : 0.0f) + static_cast<float>(sums.dy_xc * rstd);
      }
      if (dbeta != nullptr) dbeta[ch] = (accumulate ? dbeta[ch] : 0.0f) + static_cast<float>(sums.dy);
    }
    if (dx != nullptr) {
      BlockInputGrad(x, dy, dx, mean, gamma[ch], rstd, sums, static_cast<double>(n * hw), n, c,
                     hw, ch);
    }
  }
}

__global__ void FrozenForwardKernel(const float* x, const float* __restrict__ gamma,
                                    const float* __restrict__ beta,
                                    const float* __restrict__ running_mean,
                                    const float* __restrict__ running_var, float eps, float* y,
                                    int64_t c, int64_t hw, int64_t total) {
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t ch = (i / hw) % c;
    const float scale = gamma[ch] / sqrtf(running_var[ch] + eps);
    const float shift = beta[ch] - running_mean[ch] * scale;
    y[i] = x[i] * scale + shift;
  }
}

__global__ void FrozenInputGradKernel(const float* __restrict__ gamma,
                                      const float* __restrict__ running_var, float eps,
                                      const float* __restrict__ dy, float* __restrict__ dx,
                                      int64_t c, int64_t hw, int64_t total) {
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t ch = (i / hw) % c;
    const float rstd = 1.0f / sqrtf(running_var[ch] + eps);
    dx[i] = dy[i] * (gamma[ch] * rstd);
  }
}

// dgamma (needs x) and dbeta, one block per channel.
__global__ void FrozenParamGradKernel(const float* __restrict__ x,
                                      const float* __restrict__ running_mean,
                                      const float* __restrict__ running_var, float eps,
                                      const float* __restrict__ dy, float* __restrict__ dgamma,
                                      float* __restrict__ dbeta, bool accumulate, int64_t n,
                                      int64_t c, int64_t hw) {
  __shared__ double shared[kWarp];
  const int64_t count = n * hw;
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const float rstd = 1.0f / sqrtf(running_var[ch] + eps);
    const float mean = running_mean[ch];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      const int64_t at = ChannelIndex(i, c, hw, ch);
      const float d = dy[at];
      sum_dy += d;
      if (dgamma != nullptr) sum_dy_xhat += d * (x[at] - mean) * rstd;
    }
    sum_dy = BlockSum(sum_dy, shared);
    sum_dy_xhat = BlockSum(sum_dy_xhat, shared);
    if (threadIdx.x == 0) {
      if (dgamma != nullptr) {
        dgamma[ch] = (accumulate ? dgamma[ch] : 0.0f) + static_cast<float>(sum_dy_xhat);
      }
      if (dbeta != nullptr) dbeta[ch] = (accumulate ? dbeta[ch] : 0.0f) + static_cast<float>(sum_dy);
    }
  }
}

}  // namespace

int LaunchBatchNorm2dTrainForward(const float* x, const float* gamma, const float* beta,
                                  float eps, float* y, float* save_mean, float* save_rstd,
                                  float* running_mean, float* running_var, float momentum,
                                  int64_t n, int64_t c, int64_t hw, CUstream_st* stream) {
  if (c == 0) return static_cast<int>(cudaSuccess);
  TrainForwardKernel<<<ChannelBlocks(c), kThreads, 0, stream>>>(
      x, gamma, beta, eps, y, save_mean, save_rstd, running_mean, running_var, momentum, n, c, hw);
  return static_cast<int>(cudaGetLastError());
}

int LaunchBatchNorm2dTrainBackward(const float* x, const float* gamma, const float* save_mean,
                                   const float* save_rstd, const float* dy, float* dx,
                                   float* dgamma, float* dbeta, bool accumulate, int64_t n,
                                   int64_t c, int64_t hw, CUstream_st* stream) {
  if (c == 0) return static_cast<int>(cudaSuccess);
  TrainBackwardKernel<<<ChannelBlocks(c), kThreads, 0, stream>>>(
      x, gamma, save_mean, save_rstd, dy, dx, dgamma, dbeta, accumulate, n, c, hw);
  return static_cast<int>(cudaGetLastError());
}

int LaunchBatchNorm2dFrozenForward(const float* x, const float* gamma, const float* beta,
                                   const float* running_mean, const float* running_var, float eps,
                                   float* y, int64_t n, int64_t c, int64_t hw,
                                   CUstream_st* stream) {
  const int64_t total = n * c * hw;
  if (total == 0) return static_cast<int>(cudaSuccess);
  FrozenForwardKernel<<<BlocksFor(total), kThreads, 0, stream>>>(
      x, gamma, beta, running_mean, running_var, eps, y, c, hw, total);
  return static_cast<int>(cudaGetLastError());
}

int LaunchBatchNorm2dFrozenBackward(const float* x, const float* gamma, const float* running_mean,
                                    const float* running_var, float eps, const float* dy,
                                    float* dx, float* dgamma, float* dbeta, bool accumulate,
                                    int64_t n, int64_t c, int64_t hw, CUstream_st* stream) {
  const int64_t total = n * c * hw;
  if (dx != nullptr && total > 0) {
    FrozenInputGradKernel<<<BlocksFor(total), kThreads, 0, stream>>>(gamma, running_var, eps, dy,
                                                                     dx, c, hw, total);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return static_cast<int>(e);
  }
  if ((dgamma != nullptr || dbeta != nullptr) && c > 0) {
    FrozenParamGradKernel<<<ChannelBlocks(c), kThreads, 0, stream>>>(
        x, running_mean, running_var, eps, dy, dgamma, dbeta, accumulate, n, c, hw);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
