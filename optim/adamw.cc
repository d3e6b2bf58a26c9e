#include "optim/adamw.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace strata::optim {

absl::Status ValidateAdamWHyper(const AdamWHyper& h) {
  auto bad = [](absl::string_view field, double value, absl::string_view rule) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamW: ", field, " = ", value, " must be ", rule));
  };
  if (!(h.lr >= 0)) return bad("lr", h.lr, ">= 0");
  if (!(h.beta1 >= 0 && h.beta1 < 1)) return bad("beta1", h.beta1, "in [0, 1)");
  if (!(h.beta2 >= 0 && h.beta2 < 1)) return bad("beta2", h.beta2, "in [0, 1)");
  if (!(h.eps > 0)) return bad("eps", h.eps, "> 0");
  if (!(h.weight_decay >= 0)) return bad("weight_decay", h.weight_decay, ">= 0");
  return absl::OkStatus();
}

absl::Status AdamWStep(absl::Span<float> param, absl::Span<const float> grad, absl::Span<float> m,
                       absl::Span<float> v, const AdamWHyper& h, int64_t step) {
  if (grad.size() != param.size() || m.size() != param.size() || v.size() != param.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdamWStep: sizes differ: param ", param.size(), ", grad ", grad.size(), ", m ", m.size(),
        ", v ", v.size()));
  }
  if (step < 1) {
    return absl::InvalidArgumentError(absl::StrCat("AdamWStep: step ", step, " must be >= 1"));
  }
  if (absl::Status s = ValidateAdamWHyper(h); !s.ok()) return s;
  // Scalars in double then rounded once, as PyTorch computes them in Python floats.
  const float decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  const double bias1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  const float step_size = static_cast<float>(h.lr / bias1);
  const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  const float b1 = static_cast<float>(h.beta1), b2 = static_cast<float>(h.beta2);
  const float one_b1 = static_cast<float>(1.0 - h.beta1), one_b2 = static_cast<float>(1.0 - h.beta2);
  const float eps = static_cast<float>(h.eps);
  float* p = param.data();
  const float* g = grad.data();
  float* mm = m.data();
  float* vv = v.data();
  const int64_t n = static_cast<int64_t>(param.size());
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = mm[i] * b1 + gi * one_b1;
    const float vi = vv[i] * b2 + gi * gi * one_b2;
    mm[i] = mi;
    vv[i] = vi;
    const float denom = std::sqrt(vi) / bias2_sqrt + eps;
    p[i] = p[i] * decay - step_size * (mi / denom);
  }
  return absl::OkStatus();
}

}  // namespace strata::optim
