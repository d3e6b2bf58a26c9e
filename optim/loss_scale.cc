#include "optim/loss_scale.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace strata::optim {
namespace {

bool FiniteF32(double x) {
  return std::isfinite(x) && std::fabs(x) <= std::numeric_limits<float>::max();
}

}  // namespace

absl::Status LossScaleOptions::Validate() const {
  auto bad = [](const char* field, double v, const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("loss scale: ", field, " = ", v, " ", why));
  };
  if (!(init_scale > 0 && FiniteF32(init_scale))) {
    return bad("init_scale", init_scale, "must be > 0 and finite in f32");
  }
  if (!(growth_factor > 1 && FiniteF32(growth_factor))) {
    return bad("growth_factor", growth_factor, "must be > 1 and finite");
  }
  if (!(backoff_factor > 0 && backoff_factor < 1)) {
    return bad("backoff_factor", backoff_factor, "must be in (0, 1)");
  }
  if (growth_interval < 1) {
    return bad("growth_interval", static_cast<double>(growth_interval), "must be >= 1");
  }
  return absl::OkStatus();
}

LossScaler::LossScaler(const LossScaleOptions& options)
    : options_(options), scale_(static_cast<float>(options.init_scale)) {}

void LossScaler::Update(bool found_non_finite) {
  if (found_non_finite) {
    // GradScaler multiplies in f32 and lets the scale reach 0 after enough overflows; a scale of
    // 0 would make every later step's gradients 0, which are finite, so training would go on
    // silently with no gradient. Below the smallest normal f32 it stops shrinking instead.
    const float backed_off = scale_ * static_cast<float>(options_.backoff_factor);
    if (backed_off >= std::numeric_limits<float>::min()) scale_ = backed_off;
    good_steps_ = 0;
    return;
  }
  if (++good_steps_ < options_.growth_interval) return;
  const float grown = scale_ * static_cast<float>(options_.growth_factor);
  if (std::isfinite(grown)) scale_ = grown;  // as GradScaler: never grow to infinity
  good_steps_ = 0;
}

absl::Status LossScaler::Restore(double scale, int64_t good_steps) {
  if (!(scale > 0 && FiniteF32(scale))) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss scale: the restored scale ", scale, " must be > 0 and finite in f32"));
  }
  if (good_steps < 0 || good_steps >= options_.growth_interval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss scale: the restored good_steps ", good_steps, " must be in [0, growth_interval = ",
        options_.growth_interval, ")"));
  }
  scale_ = static_cast<float>(scale);
  good_steps_ = good_steps;
  return absl::OkStatus();
}

}  // namespace strata::optim
