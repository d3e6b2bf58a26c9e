#include "runtime/cuda/rotary.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/rotary_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/rotary_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

absl::Status Rotate(CUstream_st* stream, const char* op, const Tensor& x, const Tensor& table,
                    const Tensor& y, float sign) {
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckRotary(CheckCudaF32, op, x, table, y));
  const int64_t B = x.dim(0), T = x.dim(1), H = x.dim(2), D = x.dim(3);
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
