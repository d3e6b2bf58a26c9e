// Dropout on the device with the CPU's masks bit for bit: each element's draw comes from the same
// Philox rounds (runtime/cpu/philox.h, compiled for the device) at the same counter, see Note
// [dropout masks from a counter] in runtime/cpu/dropout.h, and the kept values are scaled by one
// rounded f32 product, as on the CPU. One thread per element: a thread runs the rounds for its
// element alone (four neighbouring threads compute the same counter), which keeps the kernel
// free of any dependence on the launch shape.
#include <cuda_runtime.h>

#include "runtime/cpu/philox.h"
#include "runtime/cuda/dropout_kernel.h"
#include "runtime/cuda/elementwise_map.cuh"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

template <typename T>
__global__ void DropoutKernel(const __grid_constant__ StridedView x,
                              const __grid_constant__ StridedView out, int64_t n,
                              DropoutMask mask) {
  const T* src = static_cast<const T*>(x.data);
  T* dst = static_cast<T*>(out.data);
  const uint32_t k0 = static_cast<uint32_t>(mask.seed);
  const uint32_t k1 = static_cast<uint32_t>(mask.seed >> 32);
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    const uint64_t g = static_cast<uint64_t>(mask.first_index + i);
    const uint64_t block = g >> 2;
    uint32_t r[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), mask.step,
                     mask.stream};
    cpu::Philox4x32_10Rounds(r, k0, k1);
    const uint32_t lane = static_cast<uint32_t>(g & 3);
    const uint32_t bits = lane == 0 ? r[0] : lane == 1 ? r[1] : lane == 2 ? r[2] : r[3];
    const float m = (bits >> 8) >= mask.threshold ? mask.scale : 0.0f;
    StoreF32(dst, ViewOffset(out, i), __fmul_rn(LoadF32(src, ViewOffset(x, i)), m));
  }
}

}  // namespace

int LaunchDropout(ElemType type, const StridedView& x, const StridedView& out, int64_t n,
                  const DropoutMask& mask, CUstream_st* stream) {
  if (n == 0) return static_cast<int>(cudaSuccess);
  if (type == ElemType::kF32) {
    DropoutKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(x, out, n, mask);
  } else {
    DropoutKernel<uint16_t><<<BlocksFor(n), kThreads, 0, stream>>>(x, out, n, mask);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
