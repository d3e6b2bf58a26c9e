// Softmax cross-entropy fused with its gradient, as GPT training uses it.
//
//   STRATA_RETURN_IF_ERROR(SoftmaxCrossEntropy(logits, targets, loss, dlogits));
//   // loss: mean over rows of -log softmax(logits)[target]; dlogits = d loss / d logits
//   STRATA_RETURN_IF_ERROR(SoftmaxCrossEntropy(logits, targets, loss, logits));  // in place
//
// Matches torch.nn.functional.cross_entropy(reduction='mean', ignore_index): rows whose target is
// ignore_index add nothing to the loss or the count and get a zero gradient. The gradient never
// needs a separate softmax buffer: it is written over dlogits, which may be the logits themselves.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// logits (..., V) f32 contiguous; targets (...) i32/i64 with one entry per row; loss f32 with one
// element; dlogits like logits or undefined (forward only). dlogits is scaled by dloss.
// A target outside [0, V) other than ignore_index is an error naming the row and value.
absl::Status SoftmaxCrossEntropy(const Tensor& logits, const Tensor& targets, const Tensor& loss,
                                 const Tensor& dlogits, float dloss = 1.0f,
                                 int64_t ignore_index = -100);

}  // namespace strata::cpu
