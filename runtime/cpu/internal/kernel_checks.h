// Note [one argument check per kernel]
// A CPU kernel (runtime/cpu/) and its CUDA launcher (runtime/cuda/) accept the same arguments and
// refuse the others with the same errors, so each operation's validation is written once, in a
// runtime/cpu/internal/<family>_checks.h header that both include. The headers live here because
// the CPU kernel defines each operation's contract and strata_runtime (which holds the CPU
// kernels) is what the CUDA kernels library links; they include nothing but runtime/tensor.h.
//
// The checks are device-agnostic: they check defined-ness, shapes, dtypes and strides, and take
// from their caller the check of where a tensor lives, as a TensorCheck. A CPU kernel passes
// CheckF32Contiguous (f32, host-addressable, contiguous) or CheckOnHost; a CUDA launcher passes
// CheckCudaF32 or CheckOnCuda (runtime/cuda/cuda_status.h). Each check runs where the kernel ran
// it before, so an argument wrong in two ways gets the same error on either device.
//
//   STRATA_RETURN_IF_ERROR(internal::CheckReduceArgs("SumDim", CheckF32Contiguous, x, dim, out));
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runtime/shape.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// One tensor argument `name` of `op` checked for the caller's device: OK or an error naming both.
using TensorCheck = absl::Status (*)(absl::string_view op, absl::string_view name, const Tensor& t);

// Defined and host-addressable: the CPU's counterpart of CheckOnCuda.
inline absl::Status CheckOnHost(absl::string_view op, absl::string_view name, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, name, t));
  return CheckHostAddressable(op, name, t);
}

// `check`, then the expected shape (as CheckF32Contiguous's and CheckCudaF32's shape overloads).
inline absl::Status CheckWithShape(TensorCheck check, absl::string_view op, absl::string_view name,
                                   const Tensor& t, const Shape& expected) {
  STRATA_RETURN_IF_ERROR(check(op, name, t));
  return CheckShape(op, name, t, expected);
}

}  // namespace strata::cpu::internal
