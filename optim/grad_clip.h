// Gradient clipping by global L2 norm over many flat buffers (torch.nn.utils.clip_grad_norm_).
//
//   std::vector<absl::Span<float>> grads = ...;
//   double norm = GlobalGradNorm(grads);           // sqrt of the sum of squares, in double
//   ClipGradsByNorm(grads, /*max_norm=*/1.0, norm); // scales by max_norm / (norm + 1e-6) if < 1
#pragma once

#include "absl/types/span.h"

namespace strata::optim {

double GlobalGradNorm(absl::Span<const absl::Span<float>> grads);
// Returns the factor the gradients were multiplied by (1 when no clipping was needed).
double ClipGradsByNorm(absl::Span<const absl::Span<float>> grads, double max_norm,
                       double total_norm);
// Dynamic loss scaling (optim/loss_scale.h): gradients that carry a loss scale, with
// `scaled_norm` their global norm, multiplied once by 1 / scale and, when max_norm > 0, by the
// clipping factor of the unscaled norm (scaled_norm / scale). Returns the factor applied.
double UnscaleAndClipGrads(absl::Span<const absl::Span<float>> grads, double scale,
                           double max_norm, double scaled_norm);

}  // namespace strata::optim
