#include "runtime/cuda/rmsnorm.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/norm_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/rmsnorm_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

}  // namespace

absl::Status RmsNormForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma, float eps,
                            const Tensor& y, const Tensor& rstd) {
  constexpr char kOp[] = "RmsNormForward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckRmsNormForward(CheckCudaF32, x, gamma, eps, y, rstd));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  return CudaLaunchStatus(
      internal::LaunchRmsNormForward(x.data<float>(), gamma.data<float>(), eps, rows, c,
                                     y.data<float>(), rstd.data<float>(), stream),
      kOp);
}

size_t RmsNormBackwardWorkspaceBytes(const Shape& x) {
  const int64_t c = x.rank() < 1 ? 0 : x.dim(-1);
  const int64_t rows = c == 0 ? 0 : x.numel() / c;
  return static_cast<size_t>(internal::RmsNormBackwardWorkspaceFloats(rows, c)) * sizeof(float);
}

absl::Status RmsNormBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                             const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                             const Tensor& dgamma, const Tensor& workspace, GradMode mode) {
  constexpr char kOp[] = "RmsNormBackward";
  STRATA_RETURN_IF_ERROR(
      cpu::internal::CheckRmsNormBackward(CheckCudaF32, x, gamma, rstd, dy, dx, dgamma));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  float* ws = nullptr;
  if (dgamma.defined()) {
    const size_t need = RmsNormBackwardWorkspaceBytes(x.shape());
    STRATA_RETURN_IF_ERROR(
        CheckCudaWorkspace(kOp, workspace, need, "RmsNormBackwardWorkspaceBytes"));
    ws = static_cast<float*>(workspace.raw_data());
  }
  return CudaLaunchStatus(
      internal::LaunchRmsNormBackward(x.data<float>(), gamma.data<float>(), rstd.data<float>(),
                                      dy.data<float>(), dx.defined() ? dx.data<float>() : nullptr,
                                      dgamma.defined() ? dgamma.data<float>() : nullptr, ws,
                                      mode == GradMode::kAccumulate, rows, c, stream),
      kOp);
}

}  // namespace strata::cuda
