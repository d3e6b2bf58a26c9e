// AdamW on the device: the optimizer runs where its state lives (ZeRO-Offload's split), so state
// kept in GPU memory is updated by this kernel and state offloaded to host or NVMe by the CPU's
// AdamWStep (optim/adamw.h). Built where the CUDA toolkit is found (STRATA_HAVE_CUDA).
//
//   // param, grad, m, v: n floats each in device memory; `stream` a cudaStream_t (null: the
//   // default stream). Enqueues the update and returns; the stream orders what follows.
//   STRATA_RETURN_IF_ERROR(AdamWStepCuda(param, grad, m, v, n, hyper, step, stream));
//
// The same operations as the CPU's, each rounded on its own (__fmul_rn and friends, which nvcc
// never contracts into a fused multiply-add; Note [AdamW bits] in optim/adamw.cc), so the device
// and the CPU give the same bits for the same inputs.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "optim/adamw.h"
#include "optim/cuda/param_runs.h"

struct CUstream_st;

namespace strata::optim {

// Errors, before anything is enqueued: bad hyper-parameters (naming the field), step < 1, a null
// buffer with n > 0, n < 0; after: a failed launch, naming CUDA's error.
// With skip_unless_finite (one float on the device: a step's global gradient norm under loss
// scaling), the update does nothing when it is not finite, decided on the device. With `runs`,
// grad, m and v hold n elements of runs of the parameter (param_runs.h), n a multiple of the
// runs' length.
absl::Status AdamWStepCuda(float* param, const float* grad, float* m, float* v, int64_t n,
                           const AdamWHyper& h, int64_t step, CUstream_st* stream = nullptr,
                           const float* skip_unless_finite = nullptr, const ParamRuns& runs = {});

}  // namespace strata::optim
