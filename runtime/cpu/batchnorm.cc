#include "runtime/cpu/batchnorm.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/batchnorm_channel.h"
#include "runtime/cpu/internal/batchnorm_checks.h"

namespace strata::cpu {
namespace {

absl::Status CheckArgs(absl::string_view op, const Tensor& x, const Tensor& gamma,
                       const Tensor& mean, const Tensor& var, float eps) {
  STRATA_RETURN_IF_ERROR(
      internal::CheckBatchNormFrozenArgs(CheckF32Contiguous, op, x, gamma, mean, var, eps));
  const float* v = var.data<float>();
  for (int64_t i = 0; i < var.numel(); ++i) {
    if (!(v[i] >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": running_var[", i, "] = ", v[i], " is negative or NaN"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status BatchNorm2dTrainForward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                     float eps, const Tensor& y, const Tensor& save_mean,
                                     const Tensor& save_rstd, const Tensor& running_mean,
                                     const Tensor& running_var, float momentum) {
  STRATA_RETURN_IF_ERROR(internal::CheckBatchNorm2dTrainForward(
      CheckF32Contiguous, x, gamma, beta, eps, y, save_mean, save_rstd, running_mean, running_var,
      momentum));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  const int64_t count = n * hw;
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *b = beta.data<float>();
  float* yp = y.data<float>();
  float* sm = save_mean.defined() ? save_mean.data<float>() : nullptr;
  float* sr = save_rstd.defined() ? save_rstd.data<float>() : nullptr;
  float* rm = running_mean.defined() ? running_mean.data<float>() : nullptr;
  float* rv = running_var.defined() ? running_var.data<float>() : nullptr;
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 14))
  for (int64_t ch = 0; ch < c; ++ch) {
    const internal::ChannelMoments m = internal::BatchNormMoments(xp, n, c, hw, ch);
    const double rstd = 1.0 / std::sqrt(m.var + eps);
    const float mean_f = static_cast<float>(m.mean);
    if (sm != nullptr) sm[ch] = mean_f;
    if (sr != nullptr) sr[ch] = static_cast<float>(rstd);
    if (rm != nullptr) {
      internal::BatchNormUpdateRunning(rm[ch], rv[ch], m.mean, m.var, count, momentum);
    }
    internal::BatchNormNormalize(xp, yp, mean_f, static_cast<float>(g[ch] * rstd), b[ch], n, c, hw,
                                 ch);
  }
  return absl::OkStatus();
}

absl::Status BatchNorm2dTrainBackward(const Tensor& x, const Tensor& gamma,
                                      const Tensor& save_mean, const Tensor& save_rstd,
                                      const Tensor& dy, const Tensor& dx, const Tensor& dgamma,
                                      const Tensor& dbeta, GradMode mode) {
  STRATA_RETURN_IF_ERROR(internal::CheckBatchNorm2dTrainBackward(
      CheckF32Contiguous, x, gamma, save_mean, save_rstd, dy, dx, dgamma, dbeta));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  const double count = static_cast<double>(n * hw);
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *dyp = dy.data<float>();
  const float *sm = save_mean.data<float>(), *sr = save_rstd.data<float>();
  float* dxp = dx.defined() ? dx.data<float>() : nullptr;
  float* dgp = dgamma.defined() ? dgamma.data<float>() : nullptr;
  float* dbp = dbeta.defined() ? dbeta.data<float>() : nullptr;
  const bool accumulate = mode == GradMode::kAccumulate;
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 14))
  for (int64_t ch = 0; ch < c; ++ch) {
    const float mean = sm[ch];
    const internal::ChannelGradSums sums = internal::BatchNormGradSums(xp, dyp, mean, n, c, hw, ch);
    const double rstd = sr[ch];
    if (dgp != nullptr) {
      dgp[ch] = (accumulate ? dgp[ch] : 0.0f) + static_cast<float>(sums.dy_xc * rstd);
    }
    if (dbp != nullptr) dbp[ch] = (accumulate ? dbp[ch] : 0.0f) + static_cast<float>(sums.dy);
    if (dxp == nullptr) continue;
    internal::BatchNormInputGrad(xp, dyp, dxp, mean, g[ch], rstd, sums, count, n, c, hw, ch);
  }
  return absl::OkStatus();
}

absl::Status BatchNorm2dFrozenForward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& running_mean, const Tensor& running_var,
                                      float eps, const Tensor& y) {
  constexpr char kOp[] = "BatchNorm2dFrozenForward";
  STRATA_RETURN_IF_ERROR(CheckArgs(kOp, x, gamma, running_mean, running_var, eps));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "beta", beta, Shape{x.dim(1)}));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "y", y, x.shape()));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *b = beta.data<float>();
  const float *m = running_mean.data<float>(), *v = running_var.data<float>();
  float* yp = y.data<float>();
#pragma omp parallel for collapse(2) schedule(static) if (n * c * hw > (1 << 14))
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const float scale = g[ch] / std::sqrt(v[ch] + eps);
      const float shift = b[ch] - m[ch] * scale;
      const float* in = xp + (i * c + ch) * hw;
      float* out = yp + (i * c + ch) * hw;
#pragma omp simd
      for (int64_t k = 0; k < hw; ++k) out[k] = in[k] * scale + shift;
    }
  }
  return absl::OkStatus();
}

absl::Status BatchNorm2dFrozenBackward(const Tensor& x, const Tensor& gamma,
                                       const Tensor& running_mean, const Tensor& running_var,
                                       float eps, const Tensor& dy, const Tensor& dx,
                                       const Tensor& dgamma, const Tensor& dbeta, GradMode mode) {
  constexpr char kOp[] = "BatchNorm2dFrozenBackward";
  // Only dgamma reads x; without it x may be undefined, and dy gives the shapes.
  if (dgamma.defined() && !x.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": dgamma needs x"));
  }
  const Tensor& like_x = x.defined() ? x : dy;
  STRATA_RETURN_IF_ERROR(CheckArgs(kOp, like_x, gamma, running_mean, running_var, eps));
  STRATA_RETURN_IF_ERROR(
      internal::CheckBatchNormFrozenGrads(CheckF32Contiguous, kOp, like_x, dy, dx, dgamma, dbeta));
  const int64_t n = like_x.dim(0), c = like_x.dim(1), hw = like_x.dim(2) * like_x.dim(3);
  const float *xp = x.defined() ? x.data<float>() : nullptr, *g = gamma.data<float>(),
              *dyp = dy.data<float>();
  const float *m = running_mean.data<float>(), *v = running_var.data<float>();
  float* dxp = dx.defined() ? dx.data<float>() : nullptr;
  float* dgp = dgamma.defined() ? dgamma.data<float>() : nullptr;
  float* dbp = dbeta.defined() ? dbeta.data<float>() : nullptr;
  const bool accumulate = mode == GradMode::kAccumulate;
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 14))
  for (int64_t ch = 0; ch < c; ++ch) {
    const float rstd = 1.0f / std::sqrt(v[ch] + eps);
    const float scale = g[ch] * rstd;
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* d = dyp + (i * c + ch) * hw;
      if (dxp != nullptr) {
        float* out = dxp + (i * c + ch) * hw;
#pragma omp simd
        for (int64_t k = 0; k < hw; ++k) out[k] = d[k] * scale;
      }
      if (dgp != nullptr) {
        const float* in = xp + (i * c + ch) * hw;
        float s = 0, sx = 0;
#pragma omp simd reduction(+ : s, sx)
        for (int64_t k = 0; k < hw; ++k) {
          s += d[k];
          sx += d[k] * (in[k] - m[ch]) * rstd;
        }
        sum_dy += s;
        sum_dy_xhat += sx;
      } else if (dbp != nullptr) {
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < hw; ++k) s += d[k];
        sum_dy += s;
      }
    }
    if (dgp != nullptr) dgp[ch] = (accumulate ? dgp[ch] : 0.0f) + static_cast<float>(sum_dy_xhat);
    if (dbp != nullptr) dbp[ch] = (accumulate ? dbp[ch] : 0.0f) + static_cast<float>(sum_dy);
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
