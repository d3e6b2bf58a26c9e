#include "runtime/cpu/round_to_precision.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/elementwise_loop.h"

namespace strata::cpu {

absl::Status RoundToPrecision(const Tensor& x, DType precision) {
  STRATA_RETURN_IF_ERROR(CheckDefined("RoundToPrecision", "x", x));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable("RoundToPrecision", "x", x));
  if (x.dtype() != DType::kF32 || !x.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RoundToPrecision: x is ", x.ToString(), ", expected contiguous f32"));
  }
  const int64_t n = x.numel();
  float* p = x.data<float>();
  switch (precision) {
    case DType::kF32:
      return absl::OkStatus();
    case DType::kBF16:
      // The conversion is inline and branch-free but for NaN: this loop vectorizes.
#pragma omp parallel for simd schedule(static) if (n > internal::kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) p[i] = Bf16ToFloat(FloatToBf16(p[i]));
      return absl::OkStatus();
    case DType::kF16:
#pragma omp parallel for schedule(static) if (n > internal::kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) p[i] = F16ToFloat(FloatToF16(p[i]));
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat("RoundToPrecision: precision ",
                                                     DTypeName(precision),
                                                     " is not a float format (f32, bf16, f16)"));
  }
}

}  // namespace strata::cpu
