// The argument checks of the reductions along one dimension (reduce.cc), shared by the CPU
// kernels and their CUDA launchers (Note [one argument check per kernel] in kernel_checks.h).
// `f32` checks one f32 contiguous tensor on the caller's device.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// `full` viewed as (outer, n, inner) around dimension `dim`.
struct ReduceAround {
  int64_t outer = 1, n = 1, inner = 1;
};

// `reduced` must be full's shape without dimension `dim`.
inline absl::StatusOr<ReduceAround> CheckReduceAround(TensorCheck f32, absl::string_view op,
                                                      absl::string_view full_name,
                                                      const Tensor& full, int dim,
                                                      absl::string_view reduced_name,
                                                      const Tensor& reduced) {
  STRATA_RETURN_IF_ERROR(f32(op, full_name, full));
  STRATA_RETURN_IF_ERROR(f32(op, reduced_name, reduced));
  const int rank = full.rank();
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": dim ", dim, " is out of range for ", full_name, " ", full.ToString()));
  }
  std::vector<int64_t> expected;
  ReduceAround a;
  for (int i = 0; i < rank; ++i) {
    if (i == d) {
      a.n = full.dim(i);
      continue;
    }
    expected.push_back(full.dim(i));
    (i < d ? a.outer : a.inner) *= full.dim(i);
  }
  if (reduced.shape() != Shape(expected)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", reduced_name, " is ",
                                                   reduced.ToString(), ", expected ",
                                                   Shape(expected).ToString(), " (", full_name, " ",
                                                   full.ToString(), " without dim ", dim, ")"));
  }
  return a;
}

// MaxDim: also a non-empty dimension where out has elements.
inline absl::StatusOr<ReduceAround> CheckMaxDim(TensorCheck f32, const Tensor& x, int dim,
                                                const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a,
                          CheckReduceAround(f32, "MaxDim", "x", x, dim, "out", out));
  if (a.n == 0 && out.numel() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaxDim: x ", x.ToString(), " has no elements along dim ", dim));
  }
  return a;
}

// MaxDimBackward: dout like out, dx like x.
inline absl::StatusOr<ReduceAround> CheckMaxDimBackward(TensorCheck f32, const Tensor& x,
                                                        const Tensor& out, const Tensor& dout,
                                                        int dim, const Tensor& dx) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a,
                          CheckReduceAround(f32, "MaxDimBackward", "x", x, dim, "out", out));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, "MaxDimBackward", "dout", dout, out.shape()));
  STRATA_RETURN_IF_ERROR(CheckWithShape(f32, "MaxDimBackward", "dx", dx, x.shape()));
  return a;
}

}  // namespace strata::cpu::internal
