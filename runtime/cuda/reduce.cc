#include "runtime/cuda/reduce.h"

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/reduce_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/reduce_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

using cpu::internal::ReduceAround;

absl::StatusOr<ReduceAround> CheckAround(absl::string_view op, absl::string_view full_name,
                                         const Tensor& full, int dim,
                                         absl::string_view reduced_name, const Tensor& reduced) {
  return cpu::internal::CheckReduceAround(CheckCudaF32, op, full_name, full, dim, reduced_name,
                                          reduced);
}

}  // namespace

absl::Status SumDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a, CheckAround("SumDim", "x", x, dim, "out", out));
  return CudaLaunchStatus(
      internal::LaunchSumDim(x.data<float>(), a.outer, a.n, a.inner, out.data<float>(), stream),
      "SumDim");
}

absl::Status MaxDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a,
                          cpu::internal::CheckMaxDim(CheckCudaF32, x, dim, out));
  return CudaLaunchStatus(
      internal::LaunchMaxDim(x.data<float>(), a.outer, a.n, a.inner, out.data<float>(), stream),
      "MaxDim");
}

absl::Status MaxDimBackward(CUstream_st* stream, const Tensor& x, const Tensor& out,
                            const Tensor& dout, int dim, const Tensor& dx) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a,
                          cpu::internal::CheckMaxDimBackward(CheckCudaF32, x, out, dout, dim, dx));
  return CudaLaunchStatus(
      internal::LaunchMaxDimBackward(x.data<float>(), out.data<float>(), dout.data<float>(),
                                     a.outer, a.n, a.inner, dx.data<float>(), stream),
      "MaxDimBackward");
}

absl::Status BroadcastDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a,
                          CheckAround("BroadcastDim", "out", out, dim, "x", x));
  return CudaLaunchStatus(
      internal::LaunchBroadcastDim(x.data<float>(), a.outer, a.n, a.inner, out.data<float>(),
                                   stream),
      "BroadcastDim");
}

}  // namespace strata::cuda
