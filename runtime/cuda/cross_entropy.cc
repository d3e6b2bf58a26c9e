#include "runtime/cuda/cross_entropy.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/cross_entropy_checks.h"
#include "runtime/cuda/cross_entropy_kernel.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"

namespace strata::cuda {

size_t SoftmaxCrossEntropyWorkspaceBytes(const Shape& logits) {
  const int64_t v = logits.rank() < 1 ? 0 : logits.dim(-1);
  const int64_t rows = v == 0 ? 0 : logits.numel() / v;
  return static_cast<size_t>(internal::SoftmaxCrossEntropyWorkspaceDoubles(rows)) *
         sizeof(double);
}

absl::Status SoftmaxCrossEntropy(CUstream_st* stream, const Tensor& logits, const Tensor& targets,
                                 const Tensor& loss, const Tensor& dlogits,
                                 const Tensor& workspace, float dloss, int64_t ignore_index,
                                 float label_smoothing) {
  constexpr char kOp[] = "SoftmaxCrossEntropy";
  STRATA_RETURN_IF_ERROR(
      cpu::internal::CheckCrossEntropyLogits(CheckCudaF32, logits, label_smoothing));
  const int64_t v = logits.dim(-1), rows = logits.numel() / v;
  STRATA_RETURN_IF_ERROR(CheckCudaIds(kOp, "targets", targets));
  STRATA_RETURN_IF_ERROR(
      cpu::internal::CheckCrossEntropyOutputs(CheckCudaF32, logits, targets, loss, dlogits));
  const size_t need = SoftmaxCrossEntropyWorkspaceBytes(logits.shape());
  STRATA_RETURN_IF_ERROR(
      CheckCudaWorkspace(kOp, workspace, need, "SoftmaxCrossEntropyWorkspaceBytes"));
  if (reinterpret_cast<uintptr_t>(workspace.raw_data()) % alignof(double) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": workspace ", workspace.ToString(), " is not 8-byte aligned"));
  }
  const float off = label_smoothing / static_cast<float>(v), on = 1.0f - label_smoothing;
  return CudaLaunchStatus(
      internal::LaunchSoftmaxCrossEntropy(
          logits.data<float>(), targets.raw_data(), targets.dtype() == DType::kI64, rows, v,
          loss.data<float>(), dlogits.defined() ? dlogits.data<float>() : nullptr, dloss,
          ignore_index, on, off, static_cast<double*>(workspace.raw_data()), stream),
      kOp);
}

}  // namespace strata::cuda
