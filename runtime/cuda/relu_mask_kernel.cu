// Note [relu masks] (graph/passes/save_relu_masks.cc) on the device: the condition of ReLU's and
// ReLU6's gradient kept as one byte per element, and the gradient applied through it. Both are
// comparisons and selections, so they are the CPU's bit for bit.
#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/relu_mask_kernel.h"

namespace strata::cuda::internal {
namespace {

__global__ void ReluMaskKernel(const float* __restrict__ x, float upper,
                               uint8_t* __restrict__ mask, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    mask[i] = x[i] > 0.0f && x[i] < upper;
  }
}

// Not __restrict__: dx may be dout (the gradient written over dy).
__global__ void MaskedBackwardKernel(const uint8_t* __restrict__ mask, const float* dout,
                                     float* dx, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) dx[i] = mask[i] ? dout[i] : 0.0f;
}

}  // namespace

int LaunchReluMask(const float* x, float upper, uint8_t* mask, int64_t n, CUstream_st* stream) {
  if (n == 0) return static_cast<int>(cudaSuccess);
  ReluMaskKernel<<<BlocksFor(n), kThreads, 0, stream>>>(x, upper, mask, n);
  return static_cast<int>(cudaGetLastError());
}

int LaunchMaskedBackward(const uint8_t* mask, const float* dout, float* dx, int64_t n,
                         CUstream_st* stream) {
  if (n == 0) return static_cast<int>(cudaSuccess);
  MaskedBackwardKernel<<<BlocksFor(n), kThreads, 0, stream>>>(mask, dout, dx, n);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
