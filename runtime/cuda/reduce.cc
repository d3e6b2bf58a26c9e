#include "runtime/cuda/reduce.h"

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/reduce_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

// `full` viewed as (outer, n, inner) around dimension `dim`; `reduced` must be full's shape
// without that dimension.
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
};

absl::StatusOr<Around> CheckAround(absl::string_view op, absl::string_view full_name,
                                   const Tensor& full, int dim, absl::string_view reduced_name,
                                   const Tensor& reduced) {
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, full_name, full));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, reduced_name, reduced));
  const int rank = full.rank();
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": dim ", dim, " is out of range for ",
                                                   full_name, " ", full.ToString()));
  }
  std::vector<int64_t> expected;
  Around a;
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

}  // namespace

absl::Status SumDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const Around a, CheckAround("SumDim", "x", x, dim, "out", out));
  return CudaLaunchStatus(
      internal::LaunchSumDim(x.data<float>(), a.outer, a.n, a.inner, out.data<float>(), stream),
      "SumDim");
}

absl::Status MaxDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const Around a, CheckAround("MaxDim", "x", x, dim, "out", out));
  if (a.n == 0 && out.numel() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaxDim: x ", x.ToString(), " has no elements along dim ", dim));
  }
  return CudaLaunchStatus(
      internal::LaunchMaxDim(x.data<float>(), a.outer, a.n, a.inner, out.data<float>(), stream),
      "MaxDim");
}

absl::Status MaxDimBackward(CUstream_st* stream, const Tensor& x, const Tensor& out,
                            const Tensor& dout, int dim, const Tensor& dx) {
  STRATA_ASSIGN_OR_RETURN(const Around a,
                          CheckAround("MaxDimBackward", "x", x, dim, "out", out));
  STRATA_RETURN_IF_ERROR(CheckCudaF32("MaxDimBackward", "dout", dout, out.shape()));
  STRATA_RETURN_IF_ERROR(CheckCudaF32("MaxDimBackward", "dx", dx, x.shape()));
  return CudaLaunchStatus(
      internal::LaunchMaxDimBackward(x.data<float>(), out.data<float>(), dout.data<float>(),
                                     a.outer, a.n, a.inner, dx.data<float>(), stream),
      "MaxDimBackward");
}

absl::Status BroadcastDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const Around a, CheckAround("BroadcastDim", "out", out, dim, "x", x));
  return CudaLaunchStatus(
      internal::LaunchBroadcastDim(x.data<float>(), a.outer, a.n, a.inner, out.data<float>(),
                                   stream),
      "BroadcastDim");
}

}  // namespace strata::cuda
