// Device-side helpers the CUDA kernels share (included by *.cu files only).
//
//   const int blocks = BlocksFor(n);                         // a grid-stride loop's grid
//   Kernel<<<blocks, kThreads, 0, stream>>>(...);
//   for (int64_t i = GlobalIndex(); i < n; i += GridStride()) { ... }
//   const float total = BlockSum(partial, shared);           // every thread gets the sum
//
// Reductions run in f32 in a fixed order for a given launch shape, so a kernel's result does not
// depend on scheduling; it may differ from the CPU kernel's order in the last bits.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

namespace strata::cuda::internal {

constexpr int kThreads = 256;  // threads per block of the elementwise and row kernels
constexpr int kWarp = 32;

// Blocks for a grid-stride loop over n elements: enough to fill any device, at most 4096 (each
// thread then strides over the rest), at least 1 so that n = 0 launches nothing harmful.
inline int BlocksFor(int64_t n, int threads = kThreads) {
  const int64_t wanted = (n + threads - 1) / threads;
  return static_cast<int>(std::clamp<int64_t>(wanted, 1, 4096));
}

__device__ __forceinline__ int64_t GlobalIndex() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GridStride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// The sum of `v` over the block, returned to every thread. `shared` holds one float per warp
// (blockDim.x / 32 <= 32); blockDim.x is a multiple of 32. Every thread of the block must call it;
// a block may call it again right away (the barrier at its start protects `shared`).
__device__ __forceinline__ float BlockSum(float v, float* shared) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0f;
  return WarpSum(v);
}

// The same in double, for the statistics that the BatchNorm kernels sum in double as the CPU's
// do; `shared` holds one double per warp.
__device__ __forceinline__ double WarpSum(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

__device__ __forceinline__ double BlockSum(double v, double* shared) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0;
  return WarpSum(v);
}

// The maximum of `v` over the block, returned to every thread, as BlockSum.
__device__ __forceinline__ float BlockMax(float v, float* shared) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : -INFINITY;
  return WarpMax(v);
}

}  // namespace strata::cuda::internal
