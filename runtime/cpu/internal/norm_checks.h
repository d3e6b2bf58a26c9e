// The argument checks of the row normalisations (layernorm.cc, rmsnorm.cc), shared by the CPU
// kernels and their CUDA launchers (Note [one argument check per kernel] in kernel_checks.h).
// `f32` checks one f32 contiguous tensor on the caller's device. x is (..., C), normalised over C.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// x with features and gamma (C).
inline absl::Status CheckNormInput(TensorCheck f32, absl::string_view op, const Tensor& x,
                                   const Tensor& gamma) {
  STRATA_RETURN_IF_ERROR(f32(op, "x", x));
  if (x.rank() < 1 || x.dim(-1) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": x ", x.ToString(), " has no features"));
  }
  return CheckWithShape(f32, op, "gamma", gamma, Shape{x.dim(-1)});
}

// A per-row statistic of `rows` elements.
inline absl::Status CheckNormStats(TensorCheck f32, absl::string_view op, absl::string_view name,
                                   const Tensor& t, int64_t rows) {
  STRATA_RETURN_IF_ERROR(f32(op, name, t));
  if (t.numel() != rows) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                   ", expected ", rows, " elements (one per row)"));
  }
  return absl::OkStatus();
}

inline absl::Status CheckNormEps(absl::string_view op, float eps) {
  if (!(eps > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": eps = ", eps, " must be > 0"));
  }
  return absl::OkStatus();
}

// LayerNormForward.
inline absl::Status CheckLayerNormForward(TensorCheck f32, const Tensor& x, const Tensor& gamma,
                                          const Tensor& beta, float eps, const Tensor& y,
                                          const Tensor& mean, const Tensor& rstd) {
  constexpr char kOp[] = "LayerNormForward";
  STRATA_RETURN_IF_ERROR(CheckNormInput(f32, kOp, x, gamma));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "beta", beta, Shape{c}));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "y", y, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckNormStats(f32, kOp, "mean", mean, rows));
  STRATA_RETURN_IF_ERROR(CheckNormStats(f32, kOp, "rstd", rstd, rows));
  return CheckNormEps(kOp, eps);
}

// LayerNormBackward (less the CUDA launcher's workspace).
inline absl::Status CheckLayerNormBackward(TensorCheck f32, const Tensor& x, const Tensor& gamma,
                                           const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                                           const Tensor& dx, const Tensor& dgamma,
                                           const Tensor& dbeta, const Tensor& residual) {
  constexpr char kOp[] = "LayerNormBackward";
  STRATA_RETURN_IF_ERROR(CheckNormInput(f32, kOp, x, gamma));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  STRATA_RETURN_IF_ERROR(CheckNormStats(f32, kOp, "mean", mean, rows));
  STRATA_RETURN_IF_ERROR(CheckNormStats(f32, kOp, "rstd", rstd, rows));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dy", dy, x.shape()));
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dx", dx, x.shape()));
  if (dgamma.defined())
    STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dgamma", dgamma, Shape{c}));
  if (dbeta.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dbeta", dbeta, Shape{c}));
  if (residual.defined()) {
    if (!dx.defined()) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": residual is given but dx is not"));
    }
    STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "residual", residual, x.shape()));
  }
  return absl::OkStatus();
}

// RmsNorm's x, gamma and rstd.
inline absl::Status CheckRmsNormInput(TensorCheck f32, absl::string_view op, const Tensor& x,
                                      const Tensor& gamma, const Tensor& rstd) {
  STRATA_RETURN_IF_ERROR(CheckNormInput(f32, op, x, gamma));
  return CheckNormStats(f32, op, "rstd", rstd, x.numel() / x.dim(-1));
}

// RmsNormForward.
inline absl::Status CheckRmsNormForward(TensorCheck f32, const Tensor& x, const Tensor& gamma,
                                        float eps, const Tensor& y, const Tensor& rstd) {
  constexpr char kOp[] = "RmsNormForward";
  STRATA_RETURN_IF_ERROR(CheckRmsNormInput(f32, kOp, x, gamma, rstd));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "y", y, x.shape()));
  return CheckNormEps(kOp, eps);
}

// RmsNormBackward (less the CUDA launcher's workspace).
inline absl::Status CheckRmsNormBackward(TensorCheck f32, const Tensor& x, const Tensor& gamma,
                                         const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                                         const Tensor& dgamma) {
  constexpr char kOp[] = "RmsNormBackward";
  STRATA_RETURN_IF_ERROR(CheckRmsNormInput(f32, kOp, x, gamma, rstd));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dy", dy, x.shape()));
  if (dx.defined()) STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dx", dx, x.shape()));
  if (dgamma.defined()) {
    STRATA_RETURN_IF_ERROR(CheckWithShape(f32, kOp, "dgamma", dgamma, Shape{x.dim(-1)}));
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu::internal
