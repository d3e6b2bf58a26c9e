// The argument checks of the 2-D convolution (conv2d.cc), shared by the CPU kernels and their CUDA
// launchers (Note [one argument check per kernel] in kernel_checks.h). `f32` checks one f32
// contiguous tensor on the caller's device; the workspaces differ and are each device's own.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/conv2d.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// The forward's x (N, C, H, W), w (OC, C / groups, KH, KW), b (OC, optional) and y; returns y's
// shape. (The CPU kernel names itself "Conv2d" in these errors, the CUDA launcher
// "Conv2dForward".)
inline absl::StatusOr<Shape> CheckConv2dForward(TensorCheck f32, absl::string_view op,
                                                const Tensor& x, const Tensor& w, const Tensor& b,
                                                const Tensor& y, const Conv2dParams& p) {
  STRATA_RETURN_IF_ERROR(f32(op, "x", x));
  STRATA_RETURN_IF_ERROR(f32(op, "w", w));
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape, Conv2dOutputShape(x.shape(), w.shape(), p));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "y", y, y_shape));
  if (b.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, "b", b, Shape{w.dim(0)}));
  return y_shape;
}

// Conv2dBackward without x: w, and dy and db where db is asked for (dw needs x).
inline absl::Status CheckConv2dBackwardWithoutX(TensorCheck f32, const Tensor& w, const Tensor& dy,
                                                const Tensor& dw, const Tensor& db) {
  constexpr char kOp[] = "Conv2dBackward";
  if (dw.defined()) return absl::InvalidArgumentError(absl::StrCat(kOp, ": dw needs x"));
  STRATA_RETURN_IF_ERROR(f32(kOp, "w", w));
  // db alone is the per-channel sum of dy; with dx, dx stands for x's shape (never read).
  if (db.defined()) {
    STRATA_RETURN_IF_ERROR(f32(kOp, "dy", dy));
    STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "db", db, Shape{w.dim(0)}));
    if (dy.rank() != 4 || dy.dim(1) != w.dim(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kOp, ": dy ", dy.ToString(), " does not match w ", w.ToString()));
    }
  }
  return absl::OkStatus();
}

// Conv2dBackward with x: dy like the forward's y, the gradients asked for like x, w and b; returns
// dy's shape.
inline absl::StatusOr<Shape> CheckConv2dBackward(TensorCheck f32, const Tensor& x, const Tensor& w,
                                                 const Tensor& dy, const Tensor& dx,
                                                 const Tensor& dw, const Tensor& db,
                                                 const Conv2dParams& p) {
  constexpr char kOp[] = "Conv2dBackward";
  STRATA_RETURN_IF_ERROR(f32(kOp, "x", x));
  STRATA_RETURN_IF_ERROR(f32(kOp, "w", w));
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape, Conv2dOutputShape(x.shape(), w.shape(), p));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dy", dy, y_shape));
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dx", dx, x.shape()));
  if (dw.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dw", dw, w.shape()));
  if (db.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "db", db, Shape{w.dim(0)}));
  return y_shape;
}

}  // namespace strata::cpu::internal
