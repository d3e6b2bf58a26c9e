// The launchers' check of a ParamRuns (param_runs.h), on the host: kept apart from that header,
// which the kernels include and nvcc compiles without Abseil.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "optim/cuda/param_runs.h"

namespace strata::optim {

// Runs of `length` every `stride`, stride >= length >= 0, whose count of n elements is whole.
inline absl::Status CheckParamRuns(const char* op, const ParamRuns& r, int64_t n) {
  if (r.length < 0 || r.stride < r.length || (r.length > 0 && n % r.length != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": runs of ", r.length, " every ", r.stride,
                                                   " do not hold ", n, " elements"));
  }
  return absl::OkStatus();
}

}  // namespace strata::optim
