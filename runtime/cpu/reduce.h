// Reductions along one dimension, and their backward broadcast.
//
//   // x (B, T, C) summed over T: viewed as (outer B, n T, inner C) -> out (B, C).
//   STRATA_RETURN_IF_ERROR(SumDim(x, /*dim=*/1, out));
//   STRATA_RETURN_IF_ERROR(BroadcastDim(dout, /*dim=*/1, dx));    // dx[b, t, c] = dout[b, c]
//   STRATA_RETURN_IF_ERROR(MaxDim(x, 1, out));
//   STRATA_RETURN_IF_ERROR(MaxDimBackward(x, out, dout, 1, dx));  // dout to the first maximum
//
// f32, contiguous. `dim` counts from the front (negative: from the back) of x's (or dx's)
// shape; out has x's shape without that dimension (its elements in the same order, so a
// keepdim view is a reshape away).
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// out = the sum of x over dimension `dim` (accumulated in double).
absl::Status SumDim(const Tensor& x, int dim, const Tensor& out);
// out = the maximum of x over dimension `dim`; NaN if any element is NaN, as PyTorch.
absl::Status MaxDim(const Tensor& x, int dim, const Tensor& out);
// dx = dout at the first position along `dim` where x equals out (the index torch.max(dim)
// returns), 0 elsewhere.
absl::Status MaxDimBackward(const Tensor& x, const Tensor& out, const Tensor& dout, int dim,
                            const Tensor& dx);
// out = x repeated along dimension `dim` of out (x has out's shape without it): the backward of
// SumDim.
absl::Status BroadcastDim(const Tensor& x, int dim, const Tensor& out);

}  // namespace strata::cpu
