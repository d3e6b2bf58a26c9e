// Learning-rate schedules as a pure function of the step, so a schedule never rebuilds anything.
//
//   LrSchedule s{.kind = LrSchedule::kCosine, .max_lr = 6e-4, .min_lr = 6e-5,
//                .warmup_steps = 100, .total_steps = 5000};
//   float lr = s.At(step);                        // step counts from 0
//
// kConstant: max_lr after a linear warm-up. kCosine: linear warm-up from max_lr / warmup_steps to
// max_lr over warmup_steps, then half a cosine from max_lr down to min_lr at total_steps, and
// min_lr after that.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"

namespace strata::optim {

struct LrSchedule {
  enum Kind { kConstant, kCosine };
  Kind kind = kConstant;
  double max_lr = 1e-3;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // kCosine only

  double At(int64_t step) const;
  // Names the inconsistent field (negative lr, min_lr > max_lr, warmup > total, ...).
  absl::Status Validate() const;
};

// "constant" or "cosine".
absl::StatusOr<LrSchedule::Kind> ParseLrScheduleKind(absl::string_view name);

}  // namespace strata::optim
