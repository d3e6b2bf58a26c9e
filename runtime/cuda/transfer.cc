#include "runtime/cuda/transfer.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"

namespace strata::cuda {

absl::Status CopyTensor(CUstream_st* stream, const Tensor& dst, const Tensor& src) {
  STRATA_RETURN_IF_ERROR(CheckDefined("CopyTensor", "destination", dst));
  STRATA_RETURN_IF_ERROR(CheckDefined("CopyTensor", "source", src));
  if (src.shape() != dst.shape() || src.dtype() != dst.dtype() || !src.is_contiguous() ||
      !dst.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat("CopyTensor: source ", src.ToString(),
                                                   " and destination ", dst.ToString(),
                                                   " must be contiguous, of one shape and dtype"));
  }
  if (dst.nbytes() == 0) return absl::OkStatus();
  return CudaStatus(
      cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyDefault, stream),
      "cudaMemcpyAsync");
}

absl::StatusOr<float> ReadScalar(CUstream_st* stream, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckDefined("ReadScalar", "t", t));
  if (t.dtype() != DType::kF32 || t.numel() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReadScalar: t is ", t.ToString(), ", expected f32 with an element"));
  }
  float value = 0;
  STRATA_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpyAsync(&value, t.raw_data(), sizeof(float), cudaMemcpyDefault, stream),
                 "cudaMemcpyAsync"));
  STRATA_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream), "cudaStreamSynchronize"));
  return value;
}

absl::Status ZeroTensor(CUstream_st* stream, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda("ZeroTensor", "t", t));
  if (!t.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ZeroTensor: t is ", t.ToString(), ", expected contiguous"));
  }
  if (t.nbytes() == 0) return absl::OkStatus();
  return CudaStatus(cudaMemsetAsync(t.raw_data(), 0, t.nbytes(), stream), "cudaMemsetAsync");
}

}  // namespace strata::cuda
