#include "optim/cuda/adamw_cuda.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "optim/cuda/adamw_kernel.h"
#include "optim/cuda/param_runs_check.h"
#include "optim/internal/adamw_kernel.h"

namespace strata::optim {

absl::Status AdamWStepCuda(float* param, const float* grad, float* m, float* v, int64_t n,
                           const AdamWHyper& h, int64_t step, CUstream_st* stream,
                           const float* skip_unless_finite, const ParamRuns& runs) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("AdamWStepCuda: n = ", n, " < 0"));
  if (step < 1) {
    return absl::InvalidArgumentError(absl::StrCat("AdamWStepCuda: step ", step, " must be >= 1"));
  }
  if (absl::Status s = ValidateAdamWHyper(h); !s.ok()) return s;
  if (absl::Status s = CheckParamRuns("AdamWStepCuda", runs, n); !s.ok()) return s;
  if (n == 0) return absl::OkStatus();
  if (param == nullptr || grad == nullptr || m == nullptr || v == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdamWStepCuda: a null buffer for ", n, " elements (param ", param != nullptr, ", grad ",
        grad != nullptr, ", m ", m != nullptr, ", v ", v != nullptr, ")"));
  }
  const internal::AdamWScalars s = internal::MakeAdamWScalars(h, step);
  const cuda::AdamWKernelScalars k{s.decay, s.step_size, s.bias2_sqrt, s.b1,
                                   s.b2,    s.one_b1,    s.one_b2,     s.eps};
  const auto e = static_cast<cudaError_t>(
      cuda::LaunchAdamW(k, param, grad, m, v, n, runs, skip_unless_finite, stream));
  if (e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("AdamWStepCuda: the kernel's launch failed: ",
                                            cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
  }
  return absl::OkStatus();
}

}  // namespace strata::optim
