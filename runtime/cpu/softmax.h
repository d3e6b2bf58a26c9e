// Softmax and log-softmax over the last dimension, forward and backward.
//
//   STRATA_RETURN_IF_ERROR(SoftmaxForward(scores, probs));          // (..., C) -> (..., C)
//   STRATA_RETURN_IF_ERROR(SoftmaxBackward(probs, dprobs, dscores)); // uses the output
//   STRATA_RETURN_IF_ERROR(LogSoftmaxForward(logits, logp));         // log of the softmax
//
// f32, contiguous. Numerically stable (the row maximum is subtracted first); out may alias x.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// x (..., C), out like x: out = exp(x - max) / sum(exp(x - max)) per row.
absl::Status SoftmaxForward(const Tensor& x, const Tensor& out);
// y, dy, dx (..., C): dx = y * (dy - sum(dy * y)) per row. dx may alias dy.
absl::Status SoftmaxBackward(const Tensor& y, const Tensor& dy, const Tensor& dx);

// x (..., C), out like x: out = x - max - log(sum(exp(x - max))) per row.
absl::Status LogSoftmaxForward(const Tensor& x, const Tensor& out);
// y (the forward's output), dy, dx (..., C): dx = dy - exp(y) * sum(dy) per row. dx may alias dy.
absl::Status LogSoftmaxBackward(const Tensor& y, const Tensor& dy, const Tensor& dx);

}  // namespace strata::cpu
