#include "runtime/cpu/sync_batchnorm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/batchnorm_channel.h"
#include "runtime/cpu/internal/batchnorm_checks.h"

namespace strata::cpu {
namespace {

// Note [exact sums over the ranks]: a double as two floats, and back.
void Put(double v, float* hi, float* lo) {
  *hi = static_cast<float>(v);
  *lo = std::isfinite(*hi) ? static_cast<float>(v - *hi) : 0.0f;
}
double Get(const float* hi, const float* lo) { return double{*hi} + double{*lo}; }

}  // namespace

absl::Status BatchNorm2dLocalStats(const Tensor& x, int rank, const Tensor& stats) {
  STRATA_RETURN_IF_ERROR(internal::CheckBatchNorm2dLocalStats(CheckF32Contiguous, x, rank, stats));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  const float* xp = x.data<float>();
  float* s = stats.data<float>();
  std::memset(s, 0, stats.nbytes());
  float* row = s + static_cast<int64_t>(rank) * 4 * c;
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 14))
  for (int64_t ch = 0; ch < c; ++ch) {
    // As BatchNorm2dTrainForward.
    const internal::ChannelMoments m = internal::BatchNormMoments(xp, n, c, hw, ch);
    Put(m.mean, &row[ch], &row[c + ch]);
    Put(m.var, &row[2 * c + ch], &row[3 * c + ch]);
  }
  return absl::OkStatus();
}

absl::Status BatchNorm2dSyncedForward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& stats, float eps, const Tensor& y,
                                      const Tensor& save_mean, const Tensor& save_rstd,
                                      const Tensor& running_mean, const Tensor& running_var,
                                      float momentum) {
  STRATA_RETURN_IF_ERROR(internal::CheckBatchNorm2dSyncedForward(
      CheckF32Contiguous, x, gamma, beta, stats, eps, y, save_mean, save_rstd, running_mean,
      running_var, momentum));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3), world = stats.dim(0);
  const int64_t count = world * n * hw;
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *b = beta.data<float>();
  const float* s = stats.data<float>();
  float* yp = y.data<float>();
  float* sm = save_mean.defined() ? save_mean.data<float>() : nullptr;
  float* sr = save_rstd.defined() ? save_rstd.data<float>() : nullptr;
  float* rm = running_mean.defined() ? running_mean.data<float>() : nullptr;
  float* rv = running_var.defined() ? running_var.data<float>() : nullptr;
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 14))
  for (int64_t ch = 0; ch < c; ++ch) {
    // Chan's merge of W equal-sized parts, in rank order (Note [exact sums over the ranks]).
    double mean = 0;
    for (int64_t r = 0; r < world; ++r) mean += Get(&s[(r * 4) * c + ch], &s[(r * 4 + 1) * c + ch]);
    mean /= static_cast<double>(world);
    double var = 0;
    for (int64_t r = 0; r < world; ++r) {
      const double d = Get(&s[(r * 4) * c + ch], &s[(r * 4 + 1) * c + ch]) - mean;
      var += Get(&s[(r * 4 + 2) * c + ch], &s[(r * 4 + 3) * c + ch]) + d * d;
    }
    var = std::max(0.0, var / static_cast<double>(world));
    const double rstd = 1.0 / std::sqrt(var + eps);
    const float mean_f = static_cast<float>(mean);
    if (sm != nullptr) sm[ch] = mean_f;
    if (sr != nullptr) sr[ch] = static_cast<float>(rstd);
    if (rm != nullptr) {
      internal::BatchNormUpdateRunning(rm[ch], rv[ch], mean, var, count, momentum);
    }
    internal::BatchNormNormalize(xp, yp, mean_f, static_cast<float>(g[ch] * rstd), b[ch], n, c, hw,
                                 ch);
  }
  return absl::OkStatus();
}

absl::Status BatchNorm2dLocalGradStats(const Tensor& x, const Tensor& save_mean,
                                       const Tensor& save_rstd, const Tensor& dy, int rank,
                                       const Tensor& grad_stats, const Tensor& dgamma,
                                       const Tensor& dbeta) {
  STRATA_RETURN_IF_ERROR(internal::CheckBatchNorm2dLocalGradStats(
      CheckF32Contiguous, x, save_mean, save_rstd, dy, rank, grad_stats, dgamma, dbeta));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  const float *xp = x.data<float>(), *dyp = dy.data<float>();
  const float *sm = save_mean.data<float>(), *sr = save_rstd.data<float>();
  float* dgp = dgamma.defined() ? dgamma.data<float>() : nullptr;
  float* dbp = dbeta.defined() ? dbeta.data<float>() : nullptr;
  float* row = nullptr;
  if (grad_stats.defined()) {
    std::memset(grad_stats.data<float>(), 0, grad_stats.nbytes());
    row = grad_stats.data<float>() + static_cast<int64_t>(rank) * 4 * c;
  }
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 14))
  for (int64_t ch = 0; ch < c; ++ch) {
    // As BatchNorm2dTrainBackward.
    const internal::ChannelGradSums sums =
        internal::BatchNormGradSums(xp, dyp, sm[ch], n, c, hw, ch);
    if (dgp != nullptr) dgp[ch] = static_cast<float>(sums.dy_xc * double{sr[ch]});
    if (dbp != nullptr) dbp[ch] = static_cast<float>(sums.dy);
    if (row != nullptr) {
      Put(sums.dy, &row[ch], &row[c + ch]);
      Put(sums.dy_xc, &row[2 * c + ch], &row[3 * c + ch]);
    }
  }
  return absl::OkStatus();
}

absl::Status BatchNorm2dSyncedBackward(const Tensor& x, const Tensor& gamma,
                                       const Tensor& save_mean, const Tensor& save_rstd,
                                       const Tensor& dy, const Tensor& grad_stats,
                                       const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(internal::CheckBatchNorm2dSyncedBackward(
      CheckF32Contiguous, x, gamma, save_mean, save_rstd, dy, grad_stats, dx));
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3), world = grad_stats.dim(0);
  const double count = static_cast<double>(world * n * hw);
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *dyp = dy.data<float>();
  const float *sm = save_mean.data<float>(), *sr = save_rstd.data<float>();
  const float* s = grad_stats.data<float>();
  float* dxp = dx.data<float>();
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 14))
  for (int64_t ch = 0; ch < c; ++ch) {
    internal::ChannelGradSums sums;  // over every rank, in rank order
    for (int64_t r = 0; r < world; ++r) {
      sums.dy += Get(&s[(r * 4) * c + ch], &s[(r * 4 + 1) * c + ch]);
      sums.dy_xc += Get(&s[(r * 4 + 2) * c + ch], &s[(r * 4 + 3) * c + ch]);
    }
    // As BatchNorm2dTrainBackward.
    internal::BatchNormInputGrad(xp, dyp, dxp, sm[ch], g[ch], sr[ch], sums, count, n, c, hw, ch);
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
