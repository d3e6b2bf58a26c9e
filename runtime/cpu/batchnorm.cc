#include "runtime/cpu/batchnorm.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace strata::cpu {
namespace {

absl::Status CheckArgs(absl::string_view op, const Tensor& x, const Tensor& gamma,
                       const Tensor& mean, const Tensor& var, float eps) {
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, "x", x));
  STRATA_RETURN_IF_ERROR(CheckRank(op, "x", x, 4));
  const Shape c{x.dim(1)};
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, "gamma", gamma, c));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, "running_mean", mean, c));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, "running_var", var, c));
  if (!(eps > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": eps = ", eps, " must be > 0"));
  }
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
  STRATA_RETURN_IF_ERROR(CheckArgs(kOp, x, gamma, running_mean, running_var, eps));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "dy", dy, x.shape()));
  const Shape c_shape{x.dim(1)};
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "dx", dx, x.shape()));
  if (dgamma.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "dgamma", dgamma, c_shape));
  if (dbeta.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "dbeta", dbeta, c_shape));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *dyp = dy.data<float>();
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
      const float* in = xp + (i * c + ch) * hw;
      const float* d = dyp + (i * c + ch) * hw;
      if (dxp != nullptr) {
        float* out = dxp + (i * c + ch) * hw;
#pragma omp simd
        for (int64_t k = 0; k < hw; ++k) out[k] = d[k] * scale;
      }
      if (dgp != nullptr || dbp != nullptr) {
        float s = 0, sx = 0;
#pragma omp simd reduction(+ : s, sx)
        for (int64_t k = 0; k < hw; ++k) {
          s += d[k];
          sx += d[k] * (in[k] - m[ch]) * rstd;
        }
        sum_dy += s;
        sum_dy_xhat += sx;
      }
    }
    if (dgp != nullptr) dgp[ch] = (accumulate ? dgp[ch] : 0.0f) + static_cast<float>(sum_dy_xhat);
    if (dbp != nullptr) dbp[ch] = (accumulate ? dbp[ch] : 0.0f) + static_cast<float>(sum_dy);
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
