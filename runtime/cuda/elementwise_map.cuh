// The map every elementwise kernel family shares (included by *.cu files only):
//
//   struct AddOp {
//     __device__ float operator()(float a, float b) const { return __fadd_rn(a, b); }
//   };
//   return LaunchMap<2>(type, in, out, n, AddOp{}, stream);
//
// out[i] = f(in[0][i], ..., in[N-1][i]) for every element i of the logical row-major order, each
// operand contiguous or strided (StridedView), f32 or bf16 (loaded as f32, stored rounded to
// nearest even as runtime/dtype.h's FloatToBf16). One thread reads all of an element's inputs
// before it writes the element, so out may alias an input of the same layout.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/cuda/elementwise_kernel.h"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {

// Offset (in elements) of element `flat` of the logical row-major order.
__device__ __forceinline__ int64_t ViewOffset(const StridedView& v, int64_t flat) {
  if (v.contiguous) return flat;
  int64_t off = 0;
  for (int d = v.rank - 1; d >= 0; --d) {
    const int64_t n = v.size[d];
    off += (flat % n) * v.stride[d];
    flat /= n;
  }
  return off;
}

__device__ __forceinline__ float LoadF32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float LoadF32(const uint16_t* p, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(p[i]) << 16);
}
__device__ __forceinline__ void StoreF32(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void StoreF32(uint16_t* p, int64_t i, float v) {
  p[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

template <int N>
struct Operands {
  StridedView v[N];
};

// The views are __grid_constant__: ViewOffset reads them where they are, in the kernel's
// parameter space, instead of each thread copying them to local memory first.
template <typename T, int N, typename F>
__global__ void MapKernel(const __grid_constant__ Operands<N> in,
                          const __grid_constant__ StridedView out, int64_t n, F f) {
  T* dst = static_cast<T*>(out.data);
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    float v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) {
      v[k] = LoadF32(static_cast<const T*>(in.v[k].data), ViewOffset(in.v[k], i));
    }
    float r;
    if constexpr (N == 1) r = f(v[0]);
    else if constexpr (N == 2) r = f(v[0], v[1]);
    else r = f(v[0], v[1], v[2]);
    StoreF32(dst, ViewOffset(out, i), r);
  }
}

// Launches MapKernel on `stream`; returns the launch's cudaError_t (cudaSuccess for n = 0).
template <int N, typename F>
int LaunchMap(ElemType type, const StridedView* in, const StridedView& out, int64_t n, F f,
              CUstream_st* stream) {
  if (n == 0) return static_cast<int>(cudaSuccess);
  Operands<N> ops;
  for (int k = 0; k < N; ++k) ops.v[k] = in[k];
  if (type == ElemType::kF32) {
    MapKernel<float, N, F><<<BlocksFor(n), kThreads, 0, stream>>>(ops, out, n, f);
  } else {
    MapKernel<uint16_t, N, F><<<BlocksFor(n), kThreads, 0, stream>>>(ops, out, n, f);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
