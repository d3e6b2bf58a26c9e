#include "runtime/cpu/layernorm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/norm_checks.h"

namespace strata::cpu {
namespace {

constexpr int64_t kParallelThreshold = 1 << 14;

// Rows wider than this take two passes (see Note [one pass for the layer-norm gradient]); the
// one-pass accumulators live on the stack, 2 x 16 KiB per thread.
constexpr int64_t kMaxFusedColumns = 4096;

// dx = [res +] s * (g dy - mean(g dy) - xhat * mean(g dy xhat)) for one row, from the row's two
// sums; res may be null.
inline void InputGradRow(const float* in, const float* d, const float* g, float m, float s,
                         float sum_gd, float sum_gdx, int64_t c, const float* res, float* out) {
  const float mean_gd = sum_gd / static_cast<float>(c);
  const float mean_gdx = sum_gdx / static_cast<float>(c);
  if (res == nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) {
      out[i] = s * (g[i] * d[i] - mean_gd - (in[i] - m) * s * mean_gdx);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) {
      out[i] = res[i] + s * (g[i] * d[i] - mean_gd - (in[i] - m) * s * mean_gdx);
    }
  }
}

// dgamma and dbeta as column sums, one thread per block of 64 columns (wide rows only).
void ParameterGradsByColumnBlocks(const float* xp, const float* dyp, const float* mp,
                                  const float* rp, int64_t rows, int64_t c, float* dg, float* db,
                                  GradMode mode, bool parallel) {
  const bool accumulate = mode == GradMode::kAccumulate;
  constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c0 = 0; c0 < c; c0 += kBlock) {
    const int64_t c1 = std::min(c, c0 + kBlock);
    float acc_g[kBlock] = {}, acc_b[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = xp + r * c;
      const float* d = dyp + r * c;
      const float m = mp[r], s = rp[r];
#pragma omp simd
      for (int64_t i = c0; i < c1; ++i) {
        acc_g[i - c0] += d[i] * (in[i] - m) * s;
        acc_b[i - c0] += d[i];
      }
    }
    for (int64_t i = c0; i < c1; ++i) {
      if (dg) dg[i] = (accumulate ? dg[i] : 0.0f) + acc_g[i - c0];
      if (db) db[i] = (accumulate ? db[i] : 0.0f) + acc_b[i - c0];
    }
  }
}

}  // namespace

absl::Status LayerNormForward(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                              const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  STRATA_RETURN_IF_ERROR(
      internal::CheckLayerNormForward(CheckF32Contiguous, x, gamma, beta, eps, y, mean, rstd));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *b = beta.data<float>();
  float *yp = y.data<float>(), *mp = mean.data<float>(), *rp = rstd.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = xp + r * c;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < c; ++i) sum += in[i];
    const float m = sum / static_cast<float>(c);
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < c; ++i) sq += (in[i] - m) * (in[i] - m);
    const float s = 1.0f / std::sqrt(sq / static_cast<float>(c) + eps);
    float* out = yp + r * c;
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) out[i] = (in[i] - m) * s * g[i] + b[i];
    mp[r] = m;
    rp[r] = s;
  }
  return absl::OkStatus();
}

absl::Status LayerNormBackward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                               const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                               const Tensor& dgamma, const Tensor& dbeta, GradMode mode,
                               const Tensor& residual) {
  STRATA_RETURN_IF_ERROR(internal::CheckLayerNormBackward(CheckF32Contiguous, x, gamma, mean, rstd,
                                                          dy, dx, dgamma, dbeta, residual));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *dyp = dy.data<float>();
  const float *mp = mean.data<float>(), *rp = rstd.data<float>();
  float* dg = dgamma.defined() ? dgamma.data<float>() : nullptr;
  float* db = dbeta.defined() ? dbeta.data<float>() : nullptr;
  float* dxp = dx.defined() ? dx.data<float>() : nullptr;
  const float* res = residual.defined() ? residual.data<float>() : nullptr;
  const bool parallel = x.numel() > kParallelThreshold;
  if (c > kMaxFusedColumns) {
    if (dg != nullptr || db != nullptr) {  // first: dx may alias dy
      ParameterGradsByColumnBlocks(xp, dyp, mp, rp, rows, c, dg, db, mode, parallel);
    }
    if (dxp != nullptr) {
#pragma omp parallel for schedule(static) if (parallel)
      for (int64_t r = 0; r < rows; ++r) {
        const float* in = xp + r * c;
        const float* d = dyp + r * c;
        const float m = mp[r], s = rp[r];
        float sum_gd = 0.0f, sum_gdx = 0.0f;
#pragma omp simd reduction(+ : sum_gd, sum_gdx)
        for (int64_t i = 0; i < c; ++i) {
          const float gd = g[i] * d[i];
          sum_gd += gd;
          sum_gdx += gd * (in[i] - m) * s;
        }
        InputGradRow(in, d, g, m, s, sum_gd, sum_gdx, c, res != nullptr ? res + r * c : nullptr,
                     dxp + r * c);
      }
    }
    return absl::OkStatus();
  }

  // Note [one pass for the layer-norm gradient]
  // Rows up to kMaxFusedColumns wide: each thread takes a contiguous range of rows and reads each
  // row once, adding its dgamma and dbeta terms to accumulators on its stack and writing its dx
  // row while the row is in L1; the ranges' sums are then added into dgamma and dbeta in range
  // order (omp ordered), so the result depends on the thread count but never on timing. A first
  // pass over column blocks for dgamma and dbeta and a second for dx read x and dy twice, in
  // 256-byte pieces the first time: 0.54 -> 0.33 ms for forward + backward at 2048 x 384.
  if (mode == GradMode::kOverwrite) {
    if (dg != nullptr) std::fill_n(dg, c, 0.0f);
    if (db != nullptr) std::fill_n(db, c, 0.0f);
  }
  const int64_t parts = parallel ? omp_get_max_threads() : 1;
#pragma omp parallel for ordered schedule(static, 1) if (parallel)
  for (int64_t part = 0; part < parts; ++part) {
    float acc_g[kMaxFusedColumns], acc_b[kMaxFusedColumns];
    std::fill_n(acc_g, c, 0.0f);
    std::fill_n(acc_b, c, 0.0f);
    for (int64_t r = rows * part / parts; r < rows * (part + 1) / parts; ++r) {
      const float* in = xp + r * c;
      const float* d = dyp + r * c;
      const float m = mp[r], s = rp[r];
      float sum_gd = 0.0f, sum_gdx = 0.0f;
#pragma omp simd reduction(+ : sum_gd, sum_gdx)
      for (int64_t i = 0; i < c; ++i) {
        const float xhat = (in[i] - m) * s;
        const float gd = g[i] * d[i];
        acc_g[i] += d[i] * xhat;
        acc_b[i] += d[i];
        sum_gd += gd;
        sum_gdx += gd * xhat;
      }
      if (dxp != nullptr) {
        InputGradRow(in, d, g, m, s, sum_gd, sum_gdx, c, res != nullptr ? res + r * c : nullptr,
                     dxp + r * c);
      }
    }
#pragma omp ordered
    {
      for (int64_t i = 0; dg != nullptr && i < c; ++i) dg[i] += acc_g[i];
      for (int64_t i = 0; db != nullptr && i < c; ++i) db[i] += acc_b[i];
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
