// SgdStep (optim/sgd.h) on a CUDA device: SGD with momentum, dampening, Nesterov and weight
// decay, as torch.optim.SGD.
//
//   // param, grad, buffer: n floats on the device (buffer unused without momentum)
//   STRATA_RETURN_IF_ERROR(SgdStepCuda(param, grad, buffer, n, hyper, step, stream));
//
// The CPU's operations in the CPU's order; whether a * b + c becomes one fused multiply-add is
// each compiler's choice (nvcc's and g++'s defaults both fuse), so the two agree to an ulp or
// so per step, not always bit for bit.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "optim/cuda/param_runs.h"
#include "optim/sgd.h"

struct CUstream_st;

namespace strata::optim {

// Errors, before anything is enqueued: bad hyper-parameters (naming the field), step < 1, n < 0,
// a null buffer that the step needs; after: a failed launch, naming CUDA's error. With
// skip_unless_finite (one float on the device), the step does nothing when it is not finite.
// With `runs`, grad and buffer hold n elements of runs of the parameter (param_runs.h).
absl::Status SgdStepCuda(float* param, const float* grad, float* buffer, int64_t n,
                         const SgdHyper& h, int64_t step, CUstream_st* stream = nullptr,
                         const float* skip_unless_finite = nullptr, const ParamRuns& runs = {});

}  // namespace strata::optim
