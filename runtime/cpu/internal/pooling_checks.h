// The argument checks of the pooling kernels (pooling.cc), shared by the CPU kernels and their
// CUDA launchers (Note [one argument check per kernel] in kernel_checks.h). `f32` checks one f32
// contiguous tensor on the caller's device.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/cpu/pooling.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// x_like (N, C, H, W) and y_like (N, C, OH, OW) as p pools them; returns y_like's shape.
inline absl::StatusOr<Shape> CheckPool2d(TensorCheck f32, absl::string_view op,
                                         const Tensor& x_like, const Tensor& y_like,
                                         const Pool2dParams& p, absl::string_view x_name,
                                         absl::string_view y_name) {
  STRATA_RETURN_IF_ERROR(f32(op, x_name, x_like));
  STRATA_RETURN_IF_ERROR(CheckRank(op, x_name, x_like, 4));
  STRATA_ASSIGN_OR_RETURN(const Shape y_shape, Pool2dOutputShape(x_like.shape(), p));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, op, y_name, y_like, y_shape));
  return y_shape;
}

// GlobalAvgPoolForward: x (N, C, H, W) with pixels, y (N, C).
inline absl::Status CheckGlobalAvgPoolForward(TensorCheck f32, const Tensor& x, const Tensor& y) {
  constexpr char kOp[] = "GlobalAvgPoolForward";
  STRATA_RETURN_IF_ERROR(f32(kOp, "x", x));
  STRATA_RETURN_IF_ERROR(CheckRank(kOp, "x", x, 4));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "y", y, Shape{x.dim(0), x.dim(1)}));
  if (x.dim(2) * x.dim(3) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": x ", x.ToString(), " has no pixels"));
  }
  return absl::OkStatus();
}

// GlobalAvgPoolBackward: dx (N, C, H, W), dy (N, C).
inline absl::Status CheckGlobalAvgPoolBackward(TensorCheck f32, const Tensor& dy,
                                               const Tensor& dx) {
  constexpr char kOp[] = "GlobalAvgPoolBackward";
  STRATA_RETURN_IF_ERROR(f32(kOp, "dx", dx));
  STRATA_RETURN_IF_ERROR(CheckRank(kOp, "dx", dx, 4));
  return CheckWithShape(f32, kOp, "dy", dy, Shape{dx.dim(0), dx.dim(1)});
}

}  // namespace strata::cpu::internal
