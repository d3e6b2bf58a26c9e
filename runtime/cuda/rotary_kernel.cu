// Rotary position embedding: one thread per pair (x1[i], x2[i]) of a head vector, which it reads
// before writing (y may be x).
#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/rotary_kernel.h"

namespace strata::cuda::internal {
namespace {

__global__ void RotaryKernel(const float* x, const float* table, int64_t t, int64_t h, int64_t d,
                             int64_t pairs, float sign, float* y) {
  const int64_t half = d / 2;
  for (int64_t p = GlobalIndex(); p < pairs; p += GridStride()) {
    const int64_t i = p % half;
    const int64_t vec = p / half;  // (b t + pos) h + head
    const int64_t pos = (vec / h) % t;
    const float* cos = table + pos * d;
    const float* sin = cos + half;
    const int64_t o = vec * d + i;
    const float a = x[o], c = x[o + half], s = sign * sin[i];
    y[o] = a * cos[i] - c * s;
    y[o + half] = c * cos[i] + a * s;
  }
}

}  // namespace

int LaunchRotary(const float* x, const float* table, int64_t b, int64_t t, int64_t h, int64_t d,
                 float sign, float* y, CUstream_st* stream) {
  const int64_t pairs = b * t * h * (d / 2);
  if (pairs == 0) return static_cast<int>(cudaSuccess);
  RotaryKernel<<<BlocksFor(pairs), kThreads, 0, stream>>>(x, table, t, h, d, pairs, sign, y);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
