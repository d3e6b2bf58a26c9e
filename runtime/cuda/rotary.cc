#include "runtime/cuda/rotary.h"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/rotary_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

absl::Status Rotate(CUstream_st* stream, const char* op, const Tensor& x, const Tensor& table,
                    const Tensor& y, float sign) {
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "x", x));
  if (x.rank() != 4 || x.dim(3) % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": x is ", x.ToString(), ", expected (B, T, H, D) with D even"));
  }
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "y", y, x.shape()));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "table", table));
  const int64_t B = x.dim(0), T = x.dim(1), H = x.dim(2), D = x.dim(3);
  if (table.rank() != 2 || table.dim(1) != D || table.dim(0) < T) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": table is ", table.ToString(),
                                                   ", expected (T, D) with T >= ", T,
                                                   " and D = ", D));
  }
  return CudaLaunchStatus(internal::LaunchRotary(x.data<float>(), table.data<float>(), B, T, H, D,
                                                 sign, y.data<float>(), stream),
                          op);
}

}  // namespace

absl::Status RotaryForward(CUstream_st* stream, const Tensor& x, const Tensor& table,
                           const Tensor& y) {
  return Rotate(stream, "RotaryForward", x, table, y, 1.0f);
}

absl::Status RotaryBackward(CUstream_st* stream, const Tensor& table, const Tensor& dy,
                            const Tensor& dx) {
  return Rotate(stream, "RotaryBackward", dy, table, dx, -1.0f);
}

}  // namespace strata::cuda
