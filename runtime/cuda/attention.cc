#include "runtime/cuda/attention.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/attention_checks.h"
#include "runtime/cuda/attention_kernel.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

using internal::AttentionShape;
using internal::BhtdView;
using internal::kAttentionMaxHeadDim;

// On a CUDA device and f32 (CheckBhtd checks the strides).
absl::Status CheckF32OnCuda(absl::string_view op, absl::string_view name, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, name, t));
  return CheckDType(op, name, t, DType::kF32);
}

absl::Status CheckCommon(absl::string_view op, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& lse, float scale, const Tensor& workspace) {
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckAttentionQkv(CheckF32OnCuda, op, q, k, v));
  if (q.dim(3) > kAttentionMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": q is ", q.ToString(), ", whose head dimension D = ", q.dim(3),
        " is above the ", kAttentionMaxHeadDim, " the CUDA attention kernels support"));
  }
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckAttentionLseAndScale(CheckCudaF32, op, q, lse, scale));
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, "workspace", workspace));
  const size_t need = AttentionWorkspaceBytes(q.dim(0), q.dim(1), q.dim(2), q.dim(3));
  const size_t have = static_cast<size_t>(workspace.numel()) * sizeof(float);
  if (have < need) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": workspace of ", have, " bytes is smaller than the ", need,
        " bytes it needs (AttentionWorkspaceBytes)"));
  }
  return absl::OkStatus();
}

BhtdView View(const Tensor& t) {
  return {t.data<float>(), t.stride(0), t.stride(1), t.stride(2)};
}

AttentionShape ShapeOf(const Tensor& q, const Tensor& k) {
  return {q.dim(0), q.dim(1), k.dim(1), q.dim(2), q.dim(3)};
}

}  // namespace

size_t AttentionWorkspaceBytes(int64_t batch, int64_t heads, int64_t seq, int64_t /*head_dim*/) {
  return static_cast<size_t>(batch * heads * seq) * sizeof(float);
}

absl::Status CausalAttentionForward(CUstream_st* stream, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                    float scale, const Tensor& workspace) {
  constexpr char kOp[] = "CausalAttentionForward";
  STRATA_RETURN_IF_ERROR(CheckCommon(kOp, q, k, v, lse, scale, workspace));
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckBhtd(CheckF32OnCuda, kOp, "out", out, q));
  return CudaLaunchStatus(
      internal::LaunchCausalAttentionForward(ShapeOf(q, k), View(q), View(k), View(v), View(out),
                                             lse.data<float>(), scale, stream),
      kOp);
}

absl::Status CausalAttentionBackward(CUstream_st* stream, const Tensor& q, const Tensor& k,
                                     const Tensor& v, const Tensor& lse, const Tensor& dout,
                                     const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                     float scale, const Tensor& workspace) {
  constexpr char kOp[] = "CausalAttentionBackward";
  STRATA_RETURN_IF_ERROR(CheckCommon(kOp, q, k, v, lse, scale, workspace));
  STRATA_RETURN_IF_ERROR(
      cpu::internal::CheckAttentionGrads(CheckF32OnCuda, kOp, q, k, dout, dq, dk, dv));
  return CudaLaunchStatus(
      internal::LaunchCausalAttentionBackward(ShapeOf(q, k), View(q), View(k), View(v),
                                              lse.data<float>(), View(dout), View(dq), View(dk),
                                              View(dv), workspace.data<float>(), scale, stream),
      kOp);
}

}  // namespace strata::cuda
