#include "runtime/cuda/embedding.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/embedding_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/embedding_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {

absl::Status EmbeddingForward(CUstream_st* stream, const Tensor& ids, const Tensor& table,
                              const Tensor& out) {
  constexpr char kOp[] = "EmbeddingForward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckEmbeddingTable(CheckCudaF32, kOp, "table", table));
  const int64_t v = table.dim(0), c = table.dim(1);
  STRATA_RETURN_IF_ERROR(CheckCudaIds(kOp, "ids", ids));
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckEmbeddingRows(CheckCudaF32, kOp, "out", ids, out, c));
  return CudaLaunchStatus(
      internal::LaunchEmbeddingForward(ids.raw_data(), ids.dtype() == DType::kI64, ids.numel(),
                                       table.data<float>(), v, c, out.data<float>(), stream),
      kOp);
}

absl::Status EmbeddingBackward(CUstream_st* stream, const Tensor& ids, const Tensor& dout,
                               const Tensor& dtable, GradMode mode) {
  constexpr char kOp[] = "EmbeddingBackward";
  STRATA_RETURN_IF_ERROR(cpu::internal::CheckEmbeddingTable(CheckCudaF32, kOp, "dtable", dtable));
  const int64_t v = dtable.dim(0), c = dtable.dim(1);
  STRATA_RETURN_IF_ERROR(CheckCudaIds(kOp, "ids", ids));
  STRATA_RETURN_IF_ERROR(
      cpu::internal::CheckEmbeddingRows(CheckCudaF32, kOp, "dout", ids, dout, c));
  return CudaLaunchStatus(
      internal::LaunchEmbeddingBackward(ids.raw_data(), ids.dtype() == DType::kI64, ids.numel(),
                                        dout.data<float>(), v, c, dtable.data<float>(),
                                        mode == GradMode::kAccumulate, stream),
      kOp);
}

}  // namespace strata::cuda
