// The argument checks of causal attention (attention.cc), shared by the CPU kernels and their
// CUDA launchers (Note [one argument check per kernel] in kernel_checks.h). `f32` checks that a
// tensor is f32 on the caller's device (strides are checked here); `f32_contiguous` that it is
// also contiguous.
#pragma once

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// t (B, H, T, D), of like's shape where like is defined, with a unit stride along D.
inline absl::Status CheckBhtd(TensorCheck f32, absl::string_view op, absl::string_view name,
                              const Tensor& t, const Tensor& like) {
  STRATA_RETURN_IF_ERROR(f32(op, name, t));
  if (t.rank() != 4 || (like.defined() && t.shape() != like.shape())) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " is ", t.ToString(),
                     like.defined() ? absl::StrCat(", expected shape ", like.shape().ToString())
                                    : ", expected (B, H, T, D)"));
  }
  if (t.stride(3) != 1 && t.dim(3) > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", name, " is ", t.ToString(), ", whose last dimension (D) must have stride 1"));
  }
  return absl::OkStatus();
}

// q (B, H, T, D), k and v (B, H_kv, T, D) with H a multiple of H_kv.
inline absl::Status CheckAttentionQkv(TensorCheck f32, absl::string_view op, const Tensor& q,
                                      const Tensor& k, const Tensor& v) {
  STRATA_RETURN_IF_ERROR(CheckBhtd(f32, op, "q", q, Tensor()));
  STRATA_RETURN_IF_ERROR(CheckBhtd(f32, op, "k", k, Tensor()));
  if (k.dim(0) != q.dim(0) || k.dim(2) != q.dim(2) || k.dim(3) != q.dim(3) || k.dim(1) == 0 ||
      q.dim(1) % k.dim(1) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": k is ", k.ToString(), " for q ", q.ToString(),
        ", expected (B, H_kv, T, D) with the q heads a multiple of the key/value heads H_kv"));
  }
  return CheckBhtd(f32, op, "v", v, k);
}

// lse (B, H, T) for q, and a finite positive scale.
inline absl::Status CheckAttentionLseAndScale(TensorCheck f32_contiguous, absl::string_view op,
                                              const Tensor& q, const Tensor& lse, float scale) {
  STRATA_RETURN_IF_ERROR(
      CheckWithShape(f32_contiguous, op, "lse", lse, Shape{q.dim(0), q.dim(1), q.dim(2)}));
  if (!std::isfinite(scale) || scale <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": scale = ", scale, " must be finite and > 0"));
  }
  return absl::OkStatus();
}

// The backward's dout and dq (like q), dk and dv (like k).
inline absl::Status CheckAttentionGrads(TensorCheck f32, absl::string_view op, const Tensor& q,
                                        const Tensor& k, const Tensor& dout, const Tensor& dq,
                                        const Tensor& dk, const Tensor& dv) {
  STRATA_RETURN_IF_ERROR(CheckBhtd(f32, op, "dout", dout, q));
  STRATA_RETURN_IF_ERROR(CheckBhtd(f32, op, "dq", dq, q));
  STRATA_RETURN_IF_ERROR(CheckBhtd(f32, op, "dk", dk, k));
  return CheckBhtd(f32, op, "dv", dv, k);
}

}  // namespace strata::cpu::internal
