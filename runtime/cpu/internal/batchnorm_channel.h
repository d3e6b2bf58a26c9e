// One channel's pieces of the training-mode BatchNorm kernels, shared by the one-process kernels
// (batchnorm.cc) and the synchronized ones (sync_batchnorm.cc) so that both round alike. x and dy
// are (n, c, hw), contiguous; `ch` is the channel.
#pragma once

#include <algorithm>
#include <cstdint>

namespace strata::cpu::internal {

struct ChannelMoments {
  double mean = 0, var = 0;  // the biased variance
};

// One pass over values shifted by the channel's first one, summed in double: no cancellation for
// float data, and one read of x fewer than two passes.
inline ChannelMoments BatchNormMoments(const float* xp, int64_t n, int64_t c, int64_t hw,
                                       int64_t ch) {
  const float shift = xp[ch * hw];
  double s1 = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* in = xp + (i * c + ch) * hw;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t k = 0; k < hw; ++k) {
      const double d = double{in[k]} - shift;
      s1 += d;
      s2 += d * d;
    }
  }
  const double count = static_cast<double>(n * hw);
  const double mean_shifted = s1 / count;
  return {shift + mean_shifted, std::max(0.0, s2 / count - mean_shifted * mean_shifted)};
}

// PyTorch's running statistics: the unbiased variance of `count` values.
inline void BatchNormUpdateRunning(float& running_mean, float& running_var, double mean,
                                   double var, int64_t count, double momentum) {
  const double unbiased = var * static_cast<double>(count) / static_cast<double>(count - 1);
  running_mean = static_cast<float>((1.0 - momentum) * running_mean + momentum * mean);
  running_var = static_cast<float>((1.0 - momentum) * running_var + momentum * unbiased);
}

// y = (x - mean) * scale + beta rather than x * scale + shift: no cancellation when |mean| is
// large against the standard deviation.
inline void BatchNormNormalize(const float* xp, float* yp, float mean, float scale, float beta,
                               int64_t n, int64_t c, int64_t hw, int64_t ch) {
  for (int64_t i = 0; i < n; ++i) {
    const float* in = xp + (i * c + ch) * hw;
    float* out = yp + (i * c + ch) * hw;
#pragma omp simd
    for (int64_t k = 0; k < hw; ++k) out[k] = (in[k] - mean) * scale + beta;
  }
}

struct ChannelGradSums {
  double dy = 0, dy_xc = 0;  // sum dy and sum dy * (x - mean)
};

inline ChannelGradSums BatchNormGradSums(const float* xp, const float* dyp, float mean, int64_t n,
                                         int64_t c, int64_t hw, int64_t ch) {
  double sum_dy = 0, sum_dy_xc = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* in = xp + (i * c + ch) * hw;
    const float* d = dyp + (i * c + ch) * hw;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xc)
    for (int64_t k = 0; k < hw; ++k) {
      sum_dy += d[k];
      sum_dy_xc += double{d[k]} * (in[k] - mean);
    }
  }
  return {sum_dy, sum_dy_xc};
}

// dx = g * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)) = a * dy + b * (x - mean) + c0, the
// means over `count` values whose sums are `sums`.
inline void BatchNormInputGrad(const float* xp, const float* dyp, float* dxp, float mean,
                               double gamma, double rstd, ChannelGradSums sums, double count,
                               int64_t n, int64_t c, int64_t hw, int64_t ch) {
  const double a = gamma * rstd;
  const double b = -a * rstd * rstd * sums.dy_xc / count;
  const double c0 = -a * sums.dy / count;
  const float af = static_cast<float>(a), bf = static_cast<float>(b), cf = static_cast<float>(c0);
  for (int64_t i = 0; i < n; ++i) {
    const float* in = xp + (i * c + ch) * hw;
    const float* d = dyp + (i * c + ch) * hw;
    float* out = dxp + (i * c + ch) * hw;
#pragma omp simd
    for (int64_t k = 0; k < hw; ++k) out[k] = af * d[k] + bf * (in[k] - mean) + cf;
  }
}

}  // namespace strata::cpu::internal
