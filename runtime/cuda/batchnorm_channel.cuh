// One channel's pieces of the training-mode BatchNorm kernels on the device, shared by
// batchnorm_kernel.cu and sync_batchnorm_kernel.cu so that both round alike, with the arithmetic
// of runtime/cpu/internal/batchnorm_channel.h (sums in double, the same formulas). x and dy are
// (n, c, hw), contiguous; `ch` is the channel. Every Block* function is called by all threads of
// the block that owns the channel (it synchronizes the block) and returns the same values to
// each; the sums run in a fixed order, so results are reproducible run to run.
#pragma once

#include <cstdint>

#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {

// Index in (n, c, hw) of the channel's i-th value, i in [0, n * hw).
__device__ __forceinline__ int64_t ChannelIndex(int64_t i, int64_t c, int64_t hw, int64_t ch) {
  return ((i / hw) * c + ch) * hw + i % hw;
}

struct ChannelMoments {
  double mean, var;  // the biased variance
};

// Values shifted by the channel's first one, summed in double (as the CPU's BatchNormMoments).
// n * hw >= 1.
__device__ __forceinline__ ChannelMoments BlockChannelMoments(const float* x, int64_t n,
                                                              int64_t c, int64_t hw, int64_t ch,
                                                              double* shared) {
  const float shift = x[ch * hw];
  const int64_t count = n * hw;
  double s1 = 0.0, s2 = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const double d = static_cast<double>(x[ChannelIndex(i, c, hw, ch)]) - shift;
    s1 += d;
    s2 += d * d;
  }
  s1 = BlockSum(s1, shared);
  s2 = BlockSum(s2, shared);
  const double mean_shifted = s1 / static_cast<double>(count);
  return {shift + mean_shifted, fmax(0.0, s2 / static_cast<double>(count) -
                                              mean_shifted * mean_shifted)};
}

// PyTorch's running statistics: the unbiased variance of `count` values (one thread calls it).
__device__ __forceinline__ void UpdateRunning(float* running_mean, float* running_var,
                                              double mean, double var, int64_t count,
                                              double momentum) {
  const double unbiased = var * static_cast<double>(count) / static_cast<double>(count - 1);
  *running_mean = static_cast<float>((1.0 - momentum) * *running_mean + momentum * mean);
  *running_var = static_cast<float>((1.0 - momentum) * *running_var + momentum * unbiased);
}

// y = (x - mean) * scale + beta over the channel (y may be x: each value is read, then written,
// by the same thread).
__device__ __forceinline__ void BlockNormalize(const float* x, float* y, float mean, float scale,
                                               float beta, int64_t n, int64_t c, int64_t hw,
                                               int64_t ch) {
  const int64_t count = n * hw;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t at = ChannelIndex(i, c, hw, ch);
    y[at] = (x[at] - mean) * scale + beta;
  }
}

struct ChannelGradSums {
  double dy, dy_xc;  // sum dy and sum dy * (x - mean)
};

__device__ __forceinline__ ChannelGradSums BlockChannelGradSums(const float* x, const float* dy,
                                                                float mean, int64_t n, int64_t c,
                                                                int64_t hw, int64_t ch,
                                                                double* shared) {
  const int64_t count = n * hw;
  double sum_dy = 0.0, sum_dy_xc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t at = ChannelIndex(i, c, hw, ch);
    const float d = dy[at];
    sum_dy += d;
    sum_dy_xc += static_cast<double>(d) * static_cast<double>(x[at] - mean);
  }
  return {BlockSum(sum_dy, shared), BlockSum(sum_dy_xc, shared)};
}

// dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)) = a * dy + b * (x - mean) + c0,
// the means over `count` values whose sums are `sums` (as the CPU's BatchNormInputGrad).
__device__ __forceinline__ void BlockInputGrad(const float* x, const float* dy, float* dx,
                                               float mean, double gamma, double rstd,
                                               ChannelGradSums sums, double count, int64_t n,
                                               int64_t c, int64_t hw, int64_t ch) {
  const double a = gamma * rstd;
  const double b = -a * rstd * rstd * sums.dy_xc / count;
  const double c0 = -a * sums.dy / count;
  const float af = static_cast<float>(a), bf = static_cast<float>(b), cf = static_cast<float>(c0);
  const int64_t total = n * hw;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t at = ChannelIndex(i, c, hw, ch);
    dx[at] = af * dy[at] + bf * (x[at] - mean) + cf;
  }
}

}  // namespace strata::cuda::internal
