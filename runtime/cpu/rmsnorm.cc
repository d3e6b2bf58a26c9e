#include "runtime/cpu/rmsnorm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/norm_checks.h"

namespace strata::cpu {
namespace {

constexpr int64_t kParallelThreshold = 1 << 14;

// Rows wider than this take two passes: dgamma by column blocks, then dx. The one-pass accumulator
// lives on the stack (16 KiB per thread); kernels do not allocate.
constexpr int64_t kMaxFusedColumns = 4096;

void GammaGradByColumnBlocks(const float* xp, const float* dyp, const float* rp, int64_t rows,
                             int64_t c, float* dg, bool parallel) {
  constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c0 = 0; c0 < c; c0 += kBlock) {
    const int64_t c1 = std::min(c, c0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = xp + r * c;
      const float* d = dyp + r * c;
      const float s = rp[r];
#pragma omp simd
      for (int64_t i = c0; i < c1; ++i) acc[i - c0] += d[i] * in[i] * s;
    }
    for (int64_t i = c0; i < c1; ++i) dg[i] += acc[i - c0];
  }
}

// dx = s (g dy - x s^2 mean(g dy x)) for one row.
inline void InputGradRow(const float* in, const float* d, const float* g, float s, int64_t c,
                         float* out) {
  float sum_gdx = 0.0f;
#pragma omp simd reduction(+ : sum_gdx)
  for (int64_t i = 0; i < c; ++i) sum_gdx += g[i] * d[i] * in[i];
  const float k = s * s * sum_gdx / static_cast<float>(c);
#pragma omp simd
  for (int64_t i = 0; i < c; ++i) out[i] = s * (g[i] * d[i] - in[i] * k);
}

}  // namespace

absl::Status RmsNormForward(const Tensor& x, const Tensor& gamma, float eps, const Tensor& y,
                            const Tensor& rstd) {
  STRATA_RETURN_IF_ERROR(internal::CheckRmsNormForward(CheckF32Contiguous, x, gamma, eps, y, rstd));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  const float *xp = x.data<float>(), *g = gamma.data<float>();
  float *yp = y.data<float>(), *rp = rstd.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = xp + r * c;
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < c; ++i) sq += in[i] * in[i];
    const float s = 1.0f / std::sqrt(sq / static_cast<float>(c) + eps);
    float* out = yp + r * c;
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) out[i] = in[i] * s * g[i];
    rp[r] = s;
  }
  return absl::OkStatus();
}

absl::Status RmsNormBackward(const Tensor& x, const Tensor& gamma, const Tensor& rstd,
                             const Tensor& dy, const Tensor& dx, const Tensor& dgamma,
                             GradMode mode) {
  STRATA_RETURN_IF_ERROR(
      internal::CheckRmsNormBackward(CheckF32Contiguous, x, gamma, rstd, dy, dx, dgamma));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  const float *xp = x.data<float>(), *g = gamma.data<float>(), *dyp = dy.data<float>();
  const float* rp = rstd.data<float>();
  float* dg = dgamma.defined() ? dgamma.data<float>() : nullptr;
  float* dxp = dx.defined() ? dx.data<float>() : nullptr;
  if (dg != nullptr && mode == GradMode::kOverwrite) std::fill_n(dg, c, 0.0f);
  const bool parallel = x.numel() > kParallelThreshold;
  if (c > kMaxFusedColumns) {
    if (dg != nullptr) GammaGradByColumnBlocks(xp, dyp, rp, rows, c, dg, parallel);  // first: dx may alias dy
    if (dxp != nullptr) {
#pragma omp parallel for schedule(static) if (parallel)
      for (int64_t r = 0; r < rows; ++r) InputGradRow(xp + r * c, dyp + r * c, g, rp[r], c, dxp + r * c);
    }
    return absl::OkStatus();
  }
  // As Note [one pass for the layer-norm gradient] (layernorm.cc): each part reads its rows once,
  // summing its dgamma terms on the side, and the parts' sums are added in order.
  const int64_t parts = parallel ? omp_get_max_threads() : 1;
#pragma omp parallel for ordered schedule(static, 1) if (parallel)
  for (int64_t part = 0; part < parts; ++part) {
    float acc[kMaxFusedColumns];
    std::fill_n(acc, c, 0.0f);
    for (int64_t r = rows * part / parts; r < rows * (part + 1) / parts; ++r) {
      const float* in = xp + r * c;
      const float* d = dyp + r * c;
      const float s = rp[r];
      if (dg != nullptr) {
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) acc[i] += d[i] * in[i] * s;
      }
      if (dxp != nullptr) InputGradRow(in, d, g, s, c, dxp + r * c);  // after: dx may alias dy
    }
#pragma omp ordered
    for (int64_t i = 0; dg != nullptr && i < c; ++i) dg[i] += acc[i];
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
