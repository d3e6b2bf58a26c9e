// The argument checks of SoftmaxCrossEntropy (cross_entropy.cc), shared by the CPU kernel and its
// CUDA launcher (Note [one argument check per kernel] in kernel_checks.h). `f32` checks one f32
// contiguous tensor on the caller's device. The targets' dtype and values are each device's own
// to check (the CPU kernel reads them), between the two.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// label_smoothing in [0, 1] and logits (..., V) with V > 0.
inline absl::Status CheckCrossEntropyLogits(TensorCheck f32, const Tensor& logits,
                                            float label_smoothing) {
  constexpr char kOp[] = "SoftmaxCrossEntropy";
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": label_smoothing = ", label_smoothing, " must be in [0, 1]"));
  }
  STRATA_RETURN_IF_ERROR(f32(kOp, "logits", logits));
  if (logits.rank() < 1 || logits.dim(-1) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": logits ", logits.ToString(), " has no classes"));
  }
  return absl::OkStatus();
}

// One target per row of logits, loss of one element, dlogits (optional) like logits.
inline absl::Status CheckCrossEntropyOutputs(TensorCheck f32, const Tensor& logits,
                                             const Tensor& targets, const Tensor& loss,
                                             const Tensor& dlogits) {
  constexpr char kOp[] = "SoftmaxCrossEntropy";
  const int64_t rows = logits.numel() / logits.dim(-1);
  if (targets.numel() != rows) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": targets ", targets.ToString(), " has ",
                                                   targets.numel(), " entries for ", rows,
                                                   " rows of logits ", logits.ToString()));
  }
  STRATA_RETURN_IF_ERROR(f32(kOp, "loss", loss));
  if (loss.numel() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": loss is ", loss.ToString(), ", expected one element"));
  }
  if (dlogits.defined()) {
    STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dlogits", dlogits, logits.shape()));
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu::internal
