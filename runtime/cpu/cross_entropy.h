// Softmax cross-entropy fused with its gradient, as GPT training uses it.
//
//   STRATA_RETURN_IF_ERROR(SoftmaxCrossEntropy(logits, targets, loss, dlogits));
//   // loss: mean over rows of -log softmax(logits)[target]; dlogits = d loss / d logits
//   STRATA_RETURN_IF_ERROR(SoftmaxCrossEntropy(logits, targets, loss, logits));  // in place
//
// Matches torch.nn.functional.cross_entropy(reduction='mean', ignore_index, label_smoothing): rows
// whose target is ignore_index add nothing to the loss or the count and get a zero gradient. With
// label smoothing e the target distribution is (1 - e) one_hot(target) + e / V, so a row's loss is
// (1 - e) (-log p_target) + (e / V) sum_j (-log p_j). The gradient never
// needs a separate softmax buffer: it is written over dlogits, which may be the logits themselves.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// logits (..., V) f32 contiguous; targets (...) i32/i64 with one entry per row; loss f32 with one
// element; dlogits like logits or undefined (forward only). dlogits is scaled by dloss.
// A target outside [0, V) other than ignore_index is an error naming the row and value, and so is
// label_smoothing outside [0, 1].
absl::Status SoftmaxCrossEntropy(const Tensor& logits, const Tensor& targets, const Tensor& loss,
                                 const Tensor& dlogits, float dloss = 1.0f,
                                 int64_t ignore_index = -100, float label_smoothing = 0.0f);

}  // namespace strata::cpu
