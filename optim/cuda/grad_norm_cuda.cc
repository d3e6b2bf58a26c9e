#include "optim/cuda/grad_norm_cuda.h"

#include <cuda_runtime_api.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "optim/cuda/grad_norm_kernel.h"

namespace strata::optim {
namespace {

absl::Status LaunchStatus(int error, const char* op) {
  const auto e = static_cast<cudaError_t>(error);
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(op, ": the kernel's launch failed: ", cudaGetErrorName(e),
                                          " (", cudaGetErrorString(e), ")"));
}

}  // namespace

size_t GradNormWorkspaceBytes(int64_t n) {
  return static_cast<size_t>(internal::L2NormWorkspaceDoubles(n)) * sizeof(double);
}

absl::Status GradNormCuda(const float* grad, int64_t n, float* norm, double* workspace,
                          CUstream_st* stream) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("GradNormCuda: n = ", n, " < 0"));
  if ((grad == nullptr && n > 0) || norm == nullptr || workspace == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GradNormCuda: a null buffer (grad ", grad != nullptr, ", norm ", norm != nullptr,
        ", workspace ", workspace != nullptr, ") for ", n, " elements"));
  }
  return LaunchStatus(internal::LaunchL2Norm(grad, n, norm, workspace, stream), "GradNormCuda");
}

absl::Status GlobalNormCuda(int count, absl::FunctionRef<const float*(int)> norm_at,
                            int squared_inputs, bool squared_output, float* out, double* acc,
                            CUstream_st* stream) {
  if (count < 0 || squared_inputs < 0 || squared_inputs > count) {
    return absl::InvalidArgumentError(absl::StrCat("GlobalNormCuda: squared_inputs ",
                                                   squared_inputs, " outside [0, ", count, "]"));
  }
  if (out == nullptr || acc == nullptr) {
    return absl::InvalidArgumentError("GlobalNormCuda: a null out or acc");
  }
  const int n = count;
  int offset = 0;
  do {  // no norms at all still writes the norm of nothing, 0
    internal::GlobalNormChunk chunk{};
    chunk.offset = offset;
    chunk.count = std::min(internal::kGlobalNormChunk, n - offset);
    for (int i = 0; i < chunk.count; ++i) {
      chunk.values[i] = norm_at(offset + i);
      if (chunk.values[i] == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("GlobalNormCuda: norm ", offset + i, " is a null pointer"));
      }
    }
    const bool last = offset + chunk.count >= n;
    absl::Status s =
        LaunchStatus(internal::LaunchGlobalNorm(chunk, squared_inputs, offset == 0, last,
                                                squared_output, acc, out, stream),
                     "GlobalNormCuda");
    if (!s.ok()) return s;
    offset += chunk.count;
  } while (offset < n);
  return absl::OkStatus();
}

absl::Status ClipByNormCuda(float* grad, int64_t n, const float* norm, double max_norm,
                            double scale, CUstream_st* stream) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("ClipByNormCuda: n = ", n, " < 0"));
  if (!(scale > 0) || !(max_norm >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ClipByNormCuda: scale ", scale, " must be > 0 and max_norm ", max_norm, " >= 0"));
  }
  if (n == 0) return absl::OkStatus();
  if (grad == nullptr || norm == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("ClipByNormCuda: a null buffer (grad ",
                                                   grad != nullptr, ", norm ", norm != nullptr,
                                                   ") for ", n, " elements"));
  }
  return LaunchStatus(internal::LaunchClipByNorm(grad, n, norm, max_norm, scale, stream),
                      "ClipByNormCuda");
}

}  // namespace strata::optim
