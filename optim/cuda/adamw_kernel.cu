// AdamW per element on the device, in PyTorch's order, every operation rounded on its own
// (Note [AdamW bits] in optim/adamw.cc): the _rn intrinsics are never contracted into an FMA, and
// __fdiv_rn and __fsqrt_rn are IEEE division and square root, as the CPU's.
#include "optim/cuda/adamw_kernel.h"

#include <cuda_runtime.h>

#include <algorithm>

namespace strata::optim::cuda {
namespace {

template <bool kDivideBias2>
__global__ void AdamWKernel(AdamWKernelScalars s, float* __restrict__ p,
                            const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, int64_t n, ParamRuns runs,
                            const float* skip_unless_finite) {
  if (skip_unless_finite != nullptr && !isfinite(*skip_unless_finite)) return;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float gi = g[i];
    const float mi = __fadd_rn(__fmul_rn(m[i], s.b1), __fmul_rn(gi, s.one_b1));
    const float vi = __fadd_rn(__fmul_rn(v[i], s.b2), __fmul_rn(__fmul_rn(gi, gi), s.one_b2));
    m[i] = mi;
    v[i] = vi;
    const float root = kDivideBias2 ? __fdiv_rn(__fsqrt_rn(vi), s.bias2_sqrt) : __fsqrt_rn(vi);
    const float denom = __fadd_rn(root, s.eps);
    const int64_t pi = ParamIndex(runs, i);
    p[pi] = __fsub_rn(__fmul_rn(p[pi], s.decay), __fmul_rn(s.step_size, __fdiv_rn(mi, denom)));
  }
}

}  // namespace

int LaunchAdamW(const AdamWKernelScalars& s, float* param, const float* grad, float* m, float* v,
                int64_t n, const ParamRuns& runs, const float* skip_unless_finite,
                CUstream_st* stream) {
  // A memory-bound update: enough blocks to fill any device, each thread striding over the rest.
  constexpr int kThreads = 256;
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(std::min<int64_t>(wanted, 4096));
  // As AdamWRange: dividing by sqrt(1 - beta2^t) == 1 changes no bit, so it is skipped.
  if (s.bias2_sqrt != 1.0f) {
    AdamWKernel<true><<<blocks, kThreads, 0, stream>>>(s, param, grad, m, v, n, runs,
                                                       skip_unless_finite);
  } else {
    AdamWKernel<false><<<blocks, kThreads, 0, stream>>>(s, param, grad, m, v, n, runs,
                                                        skip_unless_finite);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::optim::cuda
