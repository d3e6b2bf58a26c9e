#include "optim/cuda/sgd_kernel.h"

#include <cuda_runtime.h>

#include "runtime/cuda/kernel_util.cuh"

namespace strata::optim::internal {
namespace {

using cuda::internal::BlocksFor;
using cuda::internal::GlobalIndex;
using cuda::internal::GridStride;
using cuda::internal::kThreads;

// SgdStep's loop, element by element (the CPU's steady-state loop computes the same values).
__global__ void SgdKernel(SgdKernelScalars s, float* __restrict__ p, const float* __restrict__ g,
                          float* __restrict__ buf, int64_t n, ParamRuns runs,
                          const float* skip_unless_finite) {
  if (skip_unless_finite != nullptr && !isfinite(*skip_unless_finite)) return;
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    const int64_t pi = ParamIndex(runs, i);
    float d = g[i] + s.weight_decay * p[pi];
    if (s.use_momentum) {
      const float b = s.first ? d : buf[i] * s.momentum + s.keep * d;
      buf[i] = b;
      d = s.nesterov ? d + s.momentum * b : b;
    }
    p[pi] = p[pi] - s.lr * d;
  }
}

}  // namespace

int LaunchSgd(const SgdKernelScalars& s, float* param, const float* grad, float* buffer,
              int64_t n, const ParamRuns& runs, const float* skip_unless_finite,
              CUstream_st* stream) {
  if (n == 0) return 0;
  SgdKernel<<<BlocksFor(n), kThreads, 0, stream>>>(s, param, grad, buffer, n, runs,
                                                   skip_unless_finite);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::optim::internal
