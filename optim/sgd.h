// SGD with momentum, dampening, Nesterov and L2 weight decay over flat fp32 buffers, with exactly
// PyTorch's semantics (torch.optim.SGD):
//
//   SgdHyper h{.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4};
//   STRATA_RETURN_IF_ERROR(SgdStep(param, grad, momentum_buffer, h, step));   // step from 1
//
//   d = g + wd * p
//   buf = (step == 1) ? d : momentum * buf + (1 - dampening) * d     (when momentum != 0)
//   d = nesterov ? d + momentum * buf : buf
//   p -= lr * d
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace strata::optim {

struct SgdHyper {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
};

absl::Status ValidateSgdHyper(const SgdHyper& h);

// `momentum_buffer` may be empty when h.momentum == 0; otherwise it has param's length.
absl::Status SgdStep(absl::Span<float> param, absl::Span<const float> grad,
                     absl::Span<float> momentum_buffer, const SgdHyper& h, int64_t step);

}  // namespace strata::optim
