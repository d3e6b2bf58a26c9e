#include "runtime/cuda/layernorm.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/norm_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/layernorm_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

int64_t RowsOf(const Shape& x) {
  return x.rank() < 1 || x.dim(-1) == 0 ? 0 : x.numel() / x.dim(-1);
}

}  // namespace

absl::Status LayerNormForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                              const Tensor& beta, float eps, const Tensor& y, const Tensor& mean,
                              const Tensor& rstd) {
  STRATA_RETURN_IF_ERROR(
      cpu::internal::CheckLayerNormForward(CheckCudaF32, x, gamma, beta, eps, y, mean, rstd));
  constexpr char kOp[] = "LayerNormForward";
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  return CudaLaunchStatus(
      internal::LaunchLayerNormForward(x.data<float>(), gamma.data<float>(), beta.data<float>(),
                                       eps, rows, c, y.data<float>(), mean.data<float>(),
                                       rstd.data<float>(), stream),
      kOp);
}

size_t LayerNormBackwardWorkspaceBytes(const Shape& x) {
  const int64_t c = x.rank() < 1 ? 0 : x.dim(-1);
  return static_cast<size_t>(internal::LayerNormBackwardWorkspaceFloats(RowsOf(x), c)) *
         sizeof(float);
}

absl::Status LayerNormBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                               const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                               const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                               const Tensor& workspace, GradMode mode, const Tensor& residual) {
  constexpr char kOp[] = "LayerNormBackward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckLayerNormBackward(CheckCudaF32, x, gamma, mean, rstd,
                                                               dy, dx, dgamma, dbeta, residual));
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  float* ws = nullptr;
  if (dgamma.defined() || dbeta.defined()) {
    const size_t need = LayerNormBackwardWorkspaceBytes(x.shape());
    STRATA_RETURN_IF_ERROR(
        CheckCudaWorkspace(kOp, workspace, need, "LayerNormBackwardWorkspaceBytes"));
    ws = static_cast<float*>(workspace.raw_data());
  }
  return CudaLaunchStatus(
      internal::LaunchLayerNormBackward(
          x.data<float>(), gamma.data<float>(), mean.data<float>(), rstd.data<float>(),
          dy.data<float>(), residual.defined() ? residual.data<float>() : nullptr,
          dx.defined() ? dx.data<float>() : nullptr,
          dgamma.defined() ? dgamma.data<float>() : nullptr,
          dbeta.defined() ? dbeta.data<float>() : nullptr, ws, mode == GradMode::kAccumulate, rows,
          c, stream),
      kOp);
}

}  // namespace strata::cuda
