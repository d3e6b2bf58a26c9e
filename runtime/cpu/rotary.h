// Rotary position embedding (RoPE) as Llama applies it to queries and keys: each head vector's
// halves (x1, x2) = (x[:D/2], x[D/2:]) are rotated by the angle pos * inv_freq_i,
//   y1 = x1 cos - x2 sin,  y2 = x2 cos + x1 sin        (Hugging Face's rotate_half layout).
//
//   Tensor table = ...;  // (T, D) f32: cos of the T x D/2 angles, then their sin
//   STRATA_RETURN_IF_ERROR(RotaryTable(/*theta=*/10000, RotaryScaling(), table));
//   STRATA_RETURN_IF_ERROR(RotaryForward(x, table, y));      // x, y (B, T, H, D)
//   STRATA_RETURN_IF_ERROR(RotaryBackward(table, dy, dx));   // the inverse rotation
//
// The table is computed once (a constant of the compiled program), in double and rounded, so the
// kernels only multiply and add. A rotation's gradient is the rotation by the opposite angle.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// Llama 3's frequency scaling (transformers' rope_type "llama3"): long wavelengths are divided by
// `factor`, short ones kept, and the band between blended. factor == 0 means no scaling.
struct RotaryScaling {
  double factor = 0;
  double low_freq_factor = 1;
  double high_freq_factor = 4;
  double original_max_positions = 8192;
};

// table (T, D) f32 contiguous, D even: row t holds cos(t inv_freq_i) for i < D/2, then
// sin(t inv_freq_i), inv_freq_i = theta^(-2i/D) (scaled by `scaling`).
absl::Status RotaryTable(double theta, const RotaryScaling& scaling, const Tensor& table);

// x, y (B, T, H, D) f32 contiguous, y may be x; table (T', D) with T' >= T (positions 0..T-1).
absl::Status RotaryForward(const Tensor& x, const Tensor& table, const Tensor& y);
// dy -> dx, shapes as RotaryForward's; dx may be dy.
absl::Status RotaryBackward(const Tensor& table, const Tensor& dy, const Tensor& dx);

}  // namespace strata::cpu
