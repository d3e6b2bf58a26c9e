// SgdStepCuda's kernel (sgd_kernel.cu): plain types, see runtime/cuda/cuda_status.h.
#pragma once

#include <cstdint>

#include "optim/cuda/param_runs.h"

struct CUstream_st;

namespace strata::optim::internal {

// SgdHyper as the CPU's SgdStep rounds it (optim/sgd.cc): f32 factors and the step's flags.
struct SgdKernelScalars {
  float lr, weight_decay, momentum, keep;  // keep = 1 - dampening
  bool first, nesterov, use_momentum;
};

// The update of elements [0, n) of grad and buffer, and of param's elements `runs` puts them at,
// on `stream`, as SgdStep; buffer may be null without momentum.
// With skip_unless_finite, nothing changes when that float (on the device) is not finite.
// Returns the launch's cudaError_t.
int LaunchSgd(const SgdKernelScalars& s, float* param, const float* grad, float* buffer, int64_t n,
              const ParamRuns& runs, const float* skip_unless_finite, CUstream_st* stream);

}  // namespace strata::optim::internal
