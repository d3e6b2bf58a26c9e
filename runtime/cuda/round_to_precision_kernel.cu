// Round to nearest even through the device's own conversions: __float2bfloat16_rn and
// __float2half_rn round as runtime/dtype.h's FloatToBf16 and FloatToF16 do (NaN stays NaN, f16
// overflows to +-inf and underflows through its subnormals), so the result is the CPU's bit for bit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/round_to_precision_kernel.h"

namespace strata::cuda::internal {
namespace {

template <RoundTarget kTarget>
__global__ void RoundKernel(float* __restrict__ x, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    if constexpr (kTarget == RoundTarget::kBf16) {
      x[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
    } else {
      x[i] = __half2float(__float2half_rn(x[i]));
    }
  }
}

}  // namespace

int LaunchRoundToPrecision(float* x, int64_t n, RoundTarget target, CUstream_st* stream) {
  if (n == 0) return static_cast<int>(cudaSuccess);
  if (target == RoundTarget::kBf16) {
    RoundKernel<RoundTarget::kBf16><<<BlocksFor(n), kThreads, 0, stream>>>(x, n);
  } else {
    RoundKernel<RoundTarget::kF16><<<BlocksFor(n), kThreads, 0, stream>>>(x, n);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
