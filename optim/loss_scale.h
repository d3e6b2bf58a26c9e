// Dynamic loss scaling for fp16 training, as PyTorch's torch.cuda.amp.GradScaler does it: the
// loss (hence every gradient) is multiplied by `scale` so that small gradients survive fp16's
// range; a step whose gradients overflowed is skipped and the scale halves; after
// growth_interval steps in a row without overflow the scale doubles.
//
//   LossScaler scaler(LossScaleOptions{});           // 65536, x2 every 2000 good steps, x0.5
//   seed = 1.0 * scaler.scale();                     // the backward's seed
//   bool skipped = !AllFinite(grads);                // then: no optimizer step
//   if (!skipped) Update(params, grads * (1 / scaler.scale()));
//   scaler.Update(/*found_non_finite=*/skipped);
//
// Pure math over two numbers (the scale and the good steps since the last change); the
// compiled step applies it (Note [mixed precision] in graph/passes/mixed_precision.cc).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace strata::optim {

struct LossScaleOptions {
  double init_scale = 65536.0;   // 2^16, GradScaler's default
  double growth_factor = 2.0;    // > 1
  double backoff_factor = 0.5;   // in (0, 1)
  int64_t growth_interval = 2000;  // good steps in a row before the scale grows, >= 1
  // Names the offending field: "loss scale: growth_factor = 1 must be > 1".
  absl::Status Validate() const;
};

class LossScaler {
 public:
  // `options` must be valid (Validate).
  explicit LossScaler(const LossScaleOptions& options);

  // The current scale. Kept as f32, as GradScaler keeps it, so the seed the step multiplies by
  // is the scale itself.
  float scale() const { return scale_; }
  // Good steps since the scale last changed (GradScaler's growth tracker), in
  // [0, growth_interval).
  int64_t good_steps() const { return good_steps_; }

  // After a step: with `found_non_finite` the scale backs off and the count restarts; else the
  // count grows, and at growth_interval the scale grows (unless that would overflow f32) and the
  // count restarts.
  void Update(bool found_non_finite);

  // The state of a checkpoint; errors name the field when it does not fit the options.
  absl::Status Restore(double scale, int64_t good_steps);

 private:
  LossScaleOptions options_;
  float scale_;
  int64_t good_steps_ = 0;
};

}  // namespace strata::optim
