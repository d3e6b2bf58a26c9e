#include "runtime/cuda/cuda_status.h"

#include <cuda_runtime_api.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace strata {

absl::Status CudaStatus(int error, absl::string_view call) {
  const auto e = static_cast<cudaError_t>(error);
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string text = absl::StrCat(call, " failed: ", cudaGetErrorName(e), " (",
                                        cudaGetErrorString(e), ")");
  if (e == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(text);
  if (e == cudaErrorInvalidValue || e == cudaErrorInvalidDevice) {
    return absl::InvalidArgumentError(text);
  }
  return absl::InternalError(text);
}

absl::Status CudaLaunchStatus(int error, absl::string_view kernel) {
  return CudaStatus(error, absl::StrCat(kernel, " kernel launch"));
}

absl::Status CheckOnCuda(absl::string_view op, absl::string_view name, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, name, t));
  if (!t.device().is_cuda()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " ", t.ToString(), " is on ",
                                                   t.device().ToString(),
                                                   ", not on a CUDA device"));
  }
  return absl::OkStatus();
}

absl::Status CheckCudaF32(absl::string_view op, absl::string_view name, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, name, t));
  STRATA_RETURN_IF_ERROR(CheckDType(op, name, t, DType::kF32));
  return CheckContiguous(op, name, t);
}

absl::Status CheckCudaF32(absl::string_view op, absl::string_view name, const Tensor& t,
                          const Shape& expected) {
  STRATA_RETURN_IF_ERROR(CheckCudaF32(op, name, t));
  return CheckShape(op, name, t, expected);
}

absl::Status CheckCudaIds(absl::string_view op, absl::string_view name, const Tensor& ids) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, name, ids));
  if (ids.dtype() != DType::kI32 && ids.dtype() != DType::kI64) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " is ", ids.ToString(), ", expected i32 or i64"));
  }
  return CheckContiguous(op, name, ids);
}

absl::Status CheckCudaWorkspace(absl::string_view op, const Tensor& workspace, size_t need,
                                absl::string_view sizer) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, "workspace", workspace));
  STRATA_RETURN_IF_ERROR(CheckContiguous(op, "workspace", workspace));
  if (workspace.nbytes() < need) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": workspace ", workspace.ToString(), " has ", workspace.nbytes(),
                     " bytes, expected at least ", need, " (", sizer, ")"));
  }
  return absl::OkStatus();
}

}  // namespace strata
