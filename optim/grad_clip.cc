#include "optim/grad_clip.h"

#include <cmath>
#include <cstdint>

namespace strata::optim {

double GlobalGradNorm(absl::Span<const absl::Span<float>> grads) {
  double sum = 0;
  for (absl::Span<float> g : grads) {
    const float* p = g.data();
    const int64_t n = static_cast<int64_t>(g.size());
#pragma omp parallel for simd reduction(+ : sum) schedule(static) if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(p[i]) * p[i];
  }
  return std::sqrt(sum);
}

namespace {

// Every element of every gradient times c.
void ScaleGrads(absl::Span<const absl::Span<float>> grads, float c) {
  for (absl::Span<float> g : grads) {
    float* p = g.data();
    const int64_t n = static_cast<int64_t>(g.size());
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) p[i] *= c;
  }
}

}  // namespace

double ClipGradsByNorm(absl::Span<const absl::Span<float>> grads, double max_norm,
                       double total_norm) {
  const double coef = max_norm / (total_norm + 1e-6);
  if (coef >= 1.0) return 1.0;
  ScaleGrads(grads, static_cast<float>(coef));
  return coef;
}

double UnscaleAndClipGrads(absl::Span<const absl::Span<float>> grads, double scale,
                           double max_norm, double scaled_norm) {
  double coef = 1.0 / scale;
  if (max_norm > 0) {
    const double clip = max_norm / (scaled_norm / scale + 1e-6);
    if (clip < 1.0) coef *= clip;
  }
  if (coef == 1.0) return 1.0;
  ScaleGrads(grads, static_cast<float>(coef));
  return coef;
}

}  // namespace strata::optim
