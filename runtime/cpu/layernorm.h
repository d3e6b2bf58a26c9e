// Layer normalization over the last dimension, forward and backward (torch.nn.LayerNorm).
//
//   STRATA_RETURN_IF_ERROR(LayerNormForward(x, gamma, beta, 1e-5f, y, mean, rstd));
//   STRATA_RETURN_IF_ERROR(LayerNormBackward(x, gamma, mean, rstd, dy, dx, dgamma, dbeta));
//
// f32, contiguous. The forward saves each row's mean and 1/sqrt(var + eps) for the backward.
// The backward reads each row once: threads take contiguous row ranges, sum dgamma and dbeta
// terms on their stacks and add them up in range order, so results depend on the thread count
// but not on timing (rows wider than 4096 take a second pass instead).
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// x (..., C), gamma and beta (C), y like x; mean and rstd hold one value per row (any shape with
// x.numel() / C elements). y = (x - mean) * rstd * gamma + beta, with the biased variance.
absl::Status LayerNormForward(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                              const Tensor& y, const Tensor& mean, const Tensor& rstd);

// dy like x -> dx like x, dgamma and dbeta (C); undefined outputs are skipped. `mode` applies to
// dgamma and dbeta. With `residual` (like x), dx = residual + the input gradient: the gradient
// of a residual stream that also feeds this layer norm, without a separate add. dx may alias dy
// or residual.
absl::Status LayerNormBackward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                               const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                               const Tensor& dgamma, const Tensor& dbeta,
                               GradMode mode = GradMode::kOverwrite,
                               const Tensor& residual = Tensor());

}  // namespace strata::cpu
