#include "runtime/cuda/round_to_precision.h"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/round_to_precision_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {

absl::Status RoundToPrecision(CUstream_st* stream, const Tensor& x, DType precision) {
  STRATA_RETURN_IF_ERROR(CheckCudaF32("RoundToPrecision", "x", x));
  internal::RoundTarget target;
  switch (precision) {
    case DType::kF32:
      return absl::OkStatus();
    case DType::kBF16:
      target = internal::RoundTarget::kBf16;
      break;
    case DType::kF16:
      target = internal::RoundTarget::kF16;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("RoundToPrecision: precision ",
                                                     DTypeName(precision),
                                                     " is not a float format (f32, bf16, f16)"));
  }
  return CudaLaunchStatus(
      internal::LaunchRoundToPrecision(x.data<float>(), x.numel(), target, stream),
      "RoundToPrecision");
}

}  // namespace strata::cuda
