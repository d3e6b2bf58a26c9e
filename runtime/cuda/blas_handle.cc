#include "runtime/cuda/blas_handle.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"

namespace strata {

absl::Status CublasStatus(int status, absl::string_view call) {
  const auto s = static_cast<cublasStatus_t>(status);
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string text = absl::StrCat(call, " failed: ", cublasGetStatusName(s), " (",
                                        cublasGetStatusString(s), ")");
  switch (s) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::ResourceExhaustedError(text);
    case CUBLAS_STATUS_INVALID_VALUE:
      return absl::InvalidArgumentError(text);
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return absl::UnimplementedError(text);
    default:
      return absl::InternalError(text);
  }
}

namespace cuda {

absl::StatusOr<std::unique_ptr<CublasHandle>> CublasHandle::Create(int device,
                                                                   size_t workspace_bytes) {
  int previous = 0;
  STRATA_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  STRATA_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), absl::StrCat("cudaSetDevice(", device, ")")));
  std::unique_ptr<CublasHandle> h(new CublasHandle());
  h->device_ = device;
  absl::Status status = CublasStatus(cublasCreate(&h->handle_), "cublasCreate");
  if (status.ok()) status = CublasStatus(cublasLtCreate(&h->lt_handle_), "cublasLtCreate");
  if (status.ok() && workspace_bytes > 0) {
    status = CudaStatus(cudaMalloc(&h->workspace_, workspace_bytes),
                        absl::StrCat("cudaMalloc of a ", workspace_bytes, "-byte cuBLAS workspace"));
    if (status.ok()) h->workspace_bytes_ = workspace_bytes;
  }
  const absl::Status restored = CudaStatus(cudaSetDevice(previous), "cudaSetDevice");
  STRATA_RETURN_IF_ERROR(status);  // h's destructor frees what was made
  STRATA_RETURN_IF_ERROR(restored);
  return h;
}

CublasHandle::~CublasHandle() {
  if (handle_ != nullptr) cublasDestroy(handle_);
  if (lt_handle_ != nullptr) cublasLtDestroy(lt_handle_);
  if (workspace_ != nullptr) cudaFree(workspace_);
}

absl::Status CublasHandle::Bind(CUstream_st* stream) {
  STRATA_RETURN_IF_ERROR(CublasStatus(cublasSetStream(handle_, stream), "cublasSetStream"));
  // cublasSetStream resets the workspace to cuBLAS's own pool: give it this handle's again.
  return CublasStatus(cublasSetWorkspace(handle_, workspace_, workspace_bytes_),
                      "cublasSetWorkspace");
}

}  // namespace cuda
}  // namespace strata
