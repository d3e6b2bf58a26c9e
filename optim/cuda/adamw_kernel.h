// The AdamW kernel's launcher (adamw_kernel.cu). nvcc compiles the kernel, so this header keeps
// to plain types; optim/cuda/adamw_cuda.cc checks the arguments and makes the scalars.
#pragma once

#include <cstdint>

#include "optim/cuda/param_runs.h"

struct CUstream_st;

namespace strata::optim::cuda {

// internal::AdamWScalars (optim/internal/adamw_kernel.h), field for field.
struct AdamWKernelScalars {
  float decay, step_size, bias2_sqrt, b1, b2, one_b1, one_b2, eps;
};

// Enqueues the update of elements [0, n) of grad, m and v, and of param's elements `runs` puts
// them at, on `stream`; returns the launch's cudaError_t. With skip_unless_finite, the update
// does nothing when that float (on the device) is not finite.
int LaunchAdamW(const AdamWKernelScalars& s, float* param, const float* grad, float* m, float* v,
                int64_t n, const ParamRuns& runs, const float* skip_unless_finite,
                CUstream_st* stream);

}  // namespace strata::optim::cuda
