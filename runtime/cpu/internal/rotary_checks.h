// The argument checks of the rotary embedding (rotary.cc), shared by the CPU kernels and their
// CUDA launchers (Note [one argument check per kernel] in kernel_checks.h). `f32` checks one f32
// contiguous tensor on the caller's device.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// x (B, T, H, D) with D even, y like x, table (T', D) with T' >= T.
inline absl::Status CheckRotary(TensorCheck f32, const char* op, const Tensor& x,
                                const Tensor& table, const Tensor& y) {
  STRATA_RETURN_IF_ERROR(f32(op, "x", x));
  if (x.rank() != 4 || x.dim(3) % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": x is ", x.ToString(), ", expected (B, T, H, D) with D even"));
  }
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "y", y, x.shape()));
  STRATA_RETURN_IF_ERROR(f32(op, "table", table));
  const int64_t T = x.dim(1), D = x.dim(3);
  if (table.rank() != 2 || table.dim(1) != D || table.dim(0) < T) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": table is ", table.ToString(), ", expected (T, D) with T >= ", T, " and D = ", D));
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu::internal
