#include "optim/cuda/sgd_cuda.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "optim/cuda/param_runs_check.h"
#include "optim/cuda/sgd_kernel.h"

namespace strata::optim {

absl::Status SgdStepCuda(float* param, const float* grad, float* buffer, int64_t n,
                         const SgdHyper& h, int64_t step, CUstream_st* stream,
                         const float* skip_unless_finite, const ParamRuns& runs) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("SgdStepCuda: n = ", n, " < 0"));
  if (step < 1) {
    return absl::InvalidArgumentError(absl::StrCat("SgdStepCuda: step ", step, " must be >= 1"));
  }
  if (absl::Status s = ValidateSgdHyper(h); !s.ok()) return s;
  if (absl::Status s = CheckParamRuns("SgdStepCuda", runs, n); !s.ok()) return s;
  if (n == 0) return absl::OkStatus();
  const bool use_momentum = h.momentum != 0;
  if (param == nullptr || grad == nullptr || (use_momentum && buffer == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SgdStepCuda: a null buffer for ", n, " elements (param ", param != nullptr,
                     ", grad ", grad != nullptr, ", momentum buffer ", buffer != nullptr, ")"));
  }
  const internal::SgdKernelScalars s{
      .lr = static_cast<float>(h.lr),
      .weight_decay = static_cast<float>(h.weight_decay),
      .momentum = static_cast<float>(h.momentum),
      .keep = static_cast<float>(1.0 - h.dampening),
      .first = step == 1,
      .nesterov = h.nesterov,
      .use_momentum = use_momentum,
  };
  const auto e = static_cast<cudaError_t>(
      internal::LaunchSgd(s, param, grad, buffer, n, runs, skip_unless_finite, stream));
  if (e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("SgdStepCuda: the kernel's launch failed: ",
                                            cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
  }
  return absl::OkStatus();
}

}  // namespace strata::optim
