// CUDA runtime errors as Status, and the argument checks every CUDA kernel's launcher shares.
//
//   STRATA_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(...), "cudaMemcpyAsync"));
//   STRATA_RETURN_IF_ERROR(CheckCudaF32("gelu", "x", x));          // defined, f32, contiguous, cuda
//   STRATA_RETURN_IF_ERROR(CudaLaunchStatus(LaunchGelu(...), "gelu"));
//
// Kernels (*.cu) keep to plain types and return the launch's cudaError_t as an int, so that nvcc
// never compiles Abseil; their Tensor-facing launchers (*.cc) check arguments with these.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runtime/shape.h"
#include "runtime/tensor.h"

namespace strata {

// A failed CUDA runtime call as a Status naming the call and CUDA's error name and text; OK for
// cudaSuccess. `error` is a cudaError_t. Out of memory is ResourceExhausted, a bad value or
// device InvalidArgument, anything else Internal.
absl::Status CudaStatus(int error, absl::string_view call);

// The same for a kernel launch: "<kernel> kernel launch failed: ...".
absl::Status CudaLaunchStatus(int error, absl::string_view kernel);

// Defined and on a CUDA device; each error names `op`, the argument and the tensor.
absl::Status CheckOnCuda(absl::string_view op, absl::string_view name, const Tensor& t);
// Defined, f32, contiguous and on a CUDA device, and (if given) of the expected shape.
absl::Status CheckCudaF32(absl::string_view op, absl::string_view name, const Tensor& t);
absl::Status CheckCudaF32(absl::string_view op, absl::string_view name, const Tensor& t,
                          const Shape& expected);
// Ids (or class targets): defined, on a CUDA device, i32 or i64 and contiguous.
absl::Status CheckCudaIds(absl::string_view op, absl::string_view name, const Tensor& ids);
// A kernel's scratch memory: on a CUDA device, contiguous and of at least `need` bytes, the size
// that the function named `sizer` (e.g. "LayerNormBackwardWorkspaceBytes") gives.
absl::Status CheckCudaWorkspace(absl::string_view op, const Tensor& workspace, size_t need,
                                absl::string_view sizer);

}  // namespace strata
