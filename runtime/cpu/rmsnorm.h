// Root-mean-square normalization over the last dimension, forward and backward, as Llama's
// RMSNorm (and torch.nn.RMSNorm): y = x / sqrt(mean(x^2) + eps) * gamma, no centering, no bias.
//
//   STRATA_RETURN_IF_ERROR(RmsNormForward(x, gamma, 1e-6f, y, rstd));
//   STRATA_RETURN_IF_ERROR(RmsNormBackward(x, gamma, rstd, dy, dx, dgamma));
//
// f32, contiguous. The forward saves each row's 1/sqrt(mean(x^2) + eps) for the backward, which
// reads each row once as LayerNormBackward does (threads take contiguous row ranges and add their
// dgamma sums in range order: results depend on the thread count, never on timing).
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// x (..., C), gamma (C), y like x; rstd holds one value per row (any shape with x.numel() / C
// elements).
absl::Status RmsNormForward(const Tensor& x, const Tensor& gamma, float eps, const Tensor& y,
                            const Tensor& rstd);

// dy like x -> dx like x (may alias dy) and dgamma (C); undefined outputs are skipped. `mode`
// applies to dgamma. dx = rstd (gamma dy - x rstd^2 mean(gamma dy x)).
absl::Status RmsNormBackward(const Tensor& x, const Tensor& gamma, const Tensor& rstd,
                             const Tensor& dy, const Tensor& dx, const Tensor& dgamma,
                             GradMode mode = GradMode::kOverwrite);

}  // namespace strata::cpu
