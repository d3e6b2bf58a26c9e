#include "optim/sgd.h"

#include "absl/strings/str_cat.h"

namespace strata::optim {

absl::Status ValidateSgdHyper(const SgdHyper& h) {
  auto bad = [](absl::string_view field, double value, absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat("SGD: ", field, " = ", value, " must be ", rule));
  };
  if (!(h.lr >= 0)) return bad("lr", h.lr, ">= 0");
  if (!(h.momentum >= 0)) return bad("momentum", h.momentum, ">= 0");
  if (!(h.weight_decay >= 0)) return bad("weight_decay", h.weight_decay, ">= 0");
  if (h.nesterov && (h.momentum <= 0 || h.dampening != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SGD: nesterov needs momentum > 0 and dampening = 0 (momentum = ", h.momentum,
        ", dampening = ", h.dampening, ")"));
  }
  return absl::OkStatus();
}

absl::Status SgdStep(absl::Span<float> param, absl::Span<const float> grad,
                     absl::Span<float> momentum_buffer, const SgdHyper& h, int64_t step) {
  if (grad.size() != param.size()) {
    return absl::InvalidArgumentError(absl::StrCat("SgdStep: grad has ", grad.size(),
                                                   " elements, param ", param.size()));
  }
  if (h.momentum != 0 && momentum_buffer.size() != param.size()) {
    return absl::InvalidArgumentError(absl::StrCat("SgdStep: momentum buffer has ",
                                                   momentum_buffer.size(), " elements, param ",
                                                   param.size()));
  }
  if (step < 1) return absl::InvalidArgumentError(absl::StrCat("SgdStep: step ", step, " < 1"));
  if (absl::Status s = ValidateSgdHyper(h); !s.ok()) return s;
  const float lr = static_cast<float>(h.lr), wd = static_cast<float>(h.weight_decay);
  const float mu = static_cast<float>(h.momentum), keep = static_cast<float>(1.0 - h.dampening);
  const bool first = step == 1, nesterov = h.nesterov, use_momentum = h.momentum != 0;
  float* p = param.data();
  const float* g = grad.data();
  float* buf = momentum_buffer.data();
  const int64_t n = static_cast<int64_t>(param.size());
  if (use_momentum && !first && !nesterov) {
    // The steady state of the common case, without the per-element branches below (which keep
    // the general loop from vectorizing well: 10.6 ms against 5.7 ms for 16M elements).
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) {
      const float b = buf[i] * mu + keep * (g[i] + wd * p[i]);
      buf[i] = b;
      p[i] = p[i] - lr * b;
    }
    return absl::OkStatus();
  }
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i] + wd * p[i];
    if (use_momentum) {
      const float b = first ? d : buf[i] * mu + keep * d;
      buf[i] = b;
      d = nesterov ? d + mu * b : b;
    }
    p[i] = p[i] - lr * d;
  }
  return absl::OkStatus();
}

}  // namespace strata::optim
