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

// T is float or double (the sums the CPU kernels take in double are taken in double here too).
template <typename T>
__device__ __forceinline__ T WarpSum(T v) {
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

// The sum of `v` over the block, returned to every thread. `shared` holds one T per warp
// (blockDim.x / 32 <= 32); blockDim.x is a multiple of 32. Every thread of the block must call it;
// a block may call it again right away (the barrier at its start protects `shared`).
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* shared) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : T(0);
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

// Threads for a row kernel (one block per row) over rows of `c` elements: c rounded up to a
// warp, at least one warp and at most kThreads; wider rows loop.
inline int RowThreads(int64_t c) {
  const int64_t warps = (c + kWarp - 1) / kWarp;
  return static_cast<int>(std::clamp<int64_t>(warps, 1, kThreads / kWarp) * kWarp);
}

// Blocks for a loop over `rows` rows, one block per row (each block then strides over the rest).
inline int RowBlocks(int64_t rows) {
  return static_cast<int>(std::clamp<int64_t>(rows, 1, 1 << 20));
}

// Parameter gradients that sum over rows (layer norm's and RMS norm's dgamma and dbeta) in two
// deterministic passes: ColumnPartialsKernel splits the rows into NormGradGroups(rows) contiguous
// groups and writes each group's column sums to a workspace (groups x c floats per gradient); then
// ColumnSumKernel adds the groups' sums in group order. Each sum is taken by one thread in a fixed
// order, so results do not depend on scheduling. No atomics.
constexpr int64_t kMaxNormGradGroups = 128;

inline int64_t NormGradGroups(int64_t rows) {
  return std::clamp<int64_t>(rows, 1, kMaxNormGradGroups);
}

// Grid (ceil(c / blockDim.x), groups). kCentered (layer norm): part_g += dy (x - mean) rstd and
// part_b += dy; otherwise (RMS norm, mean unused, part_b null): part_g += dy x rstd.
template <bool kCentered>
__global__ void ColumnPartialsKernel(const float* x, const float* dy, const float* mean,
                                     const float* rstd, int64_t rows, int64_t c, int64_t groups,
                                     float* part_g, float* part_b) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= c) return;
  const int64_t g = blockIdx.y;
  const int64_t r0 = rows * g / groups, r1 = rows * (g + 1) / groups;
  float acc_g = 0.0f, acc_b = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    const float d = dy[r * c + col];
    const float in = x[r * c + col];
    if constexpr (kCentered) {
      acc_g += d * ((in - mean[r]) * rstd[r]);
      acc_b += d;
    } else {
      acc_g += d * in * rstd[r];
    }
  }
  part_g[g * c + col] = acc_g;
  if constexpr (kCentered) part_b[g * c + col] = acc_b;
}

// out[col] = [out[col] +] sum over g in order of part[g * c + col]; a grid-stride loop over c.
template <bool kAccumulate>
__global__ void ColumnSumKernel(const float* part, int64_t groups, int64_t c, float* out) {
  for (int64_t col = GlobalIndex(); col < c; col += GridStride()) {
    float s = 0.0f;
    for (int64_t g = 0; g < groups; ++g) s += part[g * c + col];
    out[col] = kAccumulate ? out[col] + s : s;
  }
}

inline int LaunchColumnSum(const float* part, int64_t groups, int64_t c, bool accumulate,
                           float* out, cudaStream_t stream) {
  if (accumulate) {
    ColumnSumKernel<true><<<BlocksFor(c), kThreads, 0, stream>>>(part, groups, c, out);
  } else {
    ColumnSumKernel<false><<<BlocksFor(c), kThreads, 0, stream>>>(part, groups, c, out);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
