// Strided copies: one thread per element of the logical row-major order, a grid-stride loop, each
// side's offset from its own sizes and strides (StridedView, 64-bit index arithmetic). Both sides
// contiguous is a plain coalesced copy; a transposing copy reads or writes with a stride (no
// shared-memory tiling yet).
#include <cuda_runtime.h>

#include "runtime/cuda/copy_kernel.h"
#include "runtime/cuda/elementwise_map.cuh"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

template <typename T>
__global__ void CopyKernel(const __grid_constant__ StridedView src,
                           const __grid_constant__ StridedView dst, int64_t n) {
  const T* s = static_cast<const T*>(src.data);
  T* d = static_cast<T*>(dst.data);
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    d[ViewOffset(dst, i)] = s[ViewOffset(src, i)];
  }
}

template <typename T>
void Launch(const StridedView& src, const StridedView& dst, int64_t n, CUstream_st* stream) {
  CopyKernel<T><<<BlocksFor(n), kThreads, 0, stream>>>(src, dst, n);
}

}  // namespace

int LaunchCopyStrided(const StridedView& src, const StridedView& dst, int64_t n, int elem_bytes,
                      CUstream_st* stream) {
  if (n == 0) return static_cast<int>(cudaSuccess);
  switch (elem_bytes) {
    case 1: Launch<uint8_t>(src, dst, n, stream); break;
    case 2: Launch<uint16_t>(src, dst, n, stream); break;
    case 4: Launch<uint32_t>(src, dst, n, stream); break;
    case 8: Launch<uint64_t>(src, dst, n, stream); break;
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
