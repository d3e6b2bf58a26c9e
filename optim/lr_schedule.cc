#include "optim/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"

namespace strata::optim {

double LrSchedule::At(int64_t step) const {
  if (step < warmup_steps) return max_lr * static_cast<double>(step + 1) / warmup_steps;
  if (kind == kConstant) return max_lr;
  if (step >= total_steps) return min_lr;
  const double progress =
      static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
  const double coeff = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return min_lr + coeff * (max_lr - min_lr);
}

absl::Status LrSchedule::Validate() const {
  if (!(max_lr >= 0)) return absl::InvalidArgumentError(absl::StrCat("lr schedule: max_lr ", max_lr, " < 0"));
  if (warmup_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lr schedule: warmup_steps ", warmup_steps, " < 0"));
  }
  if (kind == kCosine) {
    if (!(min_lr >= 0 && min_lr <= max_lr)) {
      return absl::InvalidArgumentError(absl::StrCat("lr schedule: min_lr ", min_lr,
                                                     " must be in [0, max_lr = ", max_lr, "]"));
    }
    if (total_steps <= warmup_steps) {
      return absl::InvalidArgumentError(absl::StrCat("lr schedule: total_steps ", total_steps,
                                                     " must exceed warmup_steps ", warmup_steps));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LrSchedule::Kind> ParseLrScheduleKind(absl::string_view name) {
  if (name == "constant") return LrSchedule::kConstant;
  if (name == "cosine") return LrSchedule::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown lr schedule '", name, "' (expected constant or cosine)"));
}

}  // namespace strata::optim
