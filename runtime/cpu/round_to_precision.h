// Rounds f32 values, in place, to the nearest value of a narrower float format, and keeps them as
// f32: how a CPU build stores a value in the working precision of mixed-precision training
// (Note [mixed precision] in graph/passes/mixed_precision.cc).
//
//   STRATA_RETURN_IF_ERROR(RoundToPrecision(activation, DType::kBF16));  // 8 significant bits
//   STRATA_RETURN_IF_ERROR(RoundToPrecision(grad, DType::kF16));         // 11 bits, max 65504
//
// x is f32, any shape, contiguous. Round to nearest, ties to even, as a store to that dtype and a
// load back would (FloatToBf16 / FloatToF16 in runtime/dtype.h, then back): bf16 keeps f32's
// range; f16 overflows to +-inf from 65520 on (65504 is its largest finite value) and underflows
// gradually through its subnormals (multiples of 2^-24) to a signed zero. NaN stays NaN;
// infinities and zeros keep their sign. kF32 leaves x as it is.
#pragma once

#include "absl/status/status.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace strata::cpu {

absl::Status RoundToPrecision(const Tensor& x, DType precision);

}  // namespace strata::cpu
