// The check of dropout's parameters (dropout.cc), shared by the CPU kernels and their CUDA
// launchers (Note [one argument check per kernel] in kernel_checks.h).
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/dropout.h"

namespace strata::cpu::internal {

// Dropout's p in [0, 1) and first_index >= 0.
inline absl::Status CheckDropoutParams(absl::string_view op, const DropoutParams& d) {
  if (!(d.p >= 0.0f && d.p < 1.0f)) {  // NaN fails too
    return absl::InvalidArgumentError(absl::StrCat(op, ": p = ", d.p, " must be in [0, 1)"));
  }
  if (d.first_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": first_index = ", d.first_index, " must be >= 0"));
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu::internal
