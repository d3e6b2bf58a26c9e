// Reductions along one dimension of a tensor viewed as (outer, n, inner). One thread per output
// element walks the n elements in order (neighbouring threads read neighbouring inner elements,
// so the loads coalesce); the sum of the last dimension (inner = 1) takes one block per row
// instead. Sums are taken in double, as the CPU kernel's.
#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/reduce_kernel.h"

namespace strata::cuda::internal {
namespace {

__global__ void SumDimKernel(const float* x, int64_t outer, int64_t n, int64_t inner,
                             float* out) {
  for (int64_t e = GlobalIndex(); e < outer * inner; e += GridStride()) {
    const int64_t o = e / inner, i = e - o * inner;
    const float* p = x + o * n * inner + i;
    double s = 0.0;
    for (int64_t k = 0; k < n; ++k) s += p[k * inner];
    out[e] = static_cast<float>(s);
  }
}

// inner == 1: one block per row of n.
__global__ void SumRowsKernel(const float* x, int64_t rows, int64_t n, float* out) {
  __shared__ double shared_d[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* p = x + r * n;
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) s += p[k];
    s = BlockSum(s, shared_d);
    if (threadIdx.x == 0) out[r] = static_cast<float>(s);
  }
}

// The first element, then any larger one or a NaN (which stays), as cpu::MaxDim. n >= 1.
__global__ void MaxDimKernel(const float* x, int64_t outer, int64_t n, int64_t inner,
                             float* out) {
  for (int64_t e = GlobalIndex(); e < outer * inner; e += GridStride()) {
    const int64_t o = e / inner, i = e - o * inner;
    const float* p = x + o * n * inner + i;
    float m = p[0];
    for (int64_t k = 1; k < n && !isnan(m); ++k) {
      const float v = p[k * inner];
      if (v > m || isnan(v)) m = v;
    }
    out[e] = m;
  }
}

// dout to the first position where x equals the maximum (NaN matching NaN), 0 elsewhere.
__global__ void MaxDimBackwardKernel(const float* x, const float* out, const float* dout,
                                     int64_t outer, int64_t n, int64_t inner, float* dx) {
  for (int64_t e = GlobalIndex(); e < outer * inner; e += GridStride()) {
    const int64_t o = e / inner, i = e - o * inner;
    const float m = out[e], g = dout[e];
    const float* p = x + o * n * inner + i;
    float* q = dx + o * n * inner + i;
    bool given = false;
    for (int64_t k = 0; k < n; ++k) {
      const float v = p[k * inner];
      const bool first = !given && (v == m || (isnan(m) && isnan(v)));
      q[k * inner] = first ? g : 0.0f;
      given = given || first;
    }
  }
}

__global__ void BroadcastDimKernel(const float* x, int64_t outer, int64_t n, int64_t inner,
                                   float* out) {
  for (int64_t e = GlobalIndex(); e < outer * n * inner; e += GridStride()) {
    const int64_t o = e / (n * inner), i = e % inner;
    out[e] = x[o * inner + i];
  }
}

}  // namespace

int LaunchSumDim(const float* x, int64_t outer, int64_t n, int64_t inner, float* out,
                 CUstream_st* stream) {
  const int64_t outputs = outer * inner;
  if (outputs == 0) return static_cast<int>(cudaSuccess);
  if (inner == 1 && n > 0) {
    SumRowsKernel<<<RowBlocks(outer), RowThreads(n), 0, stream>>>(x, outer, n, out);
  } else {
    SumDimKernel<<<BlocksFor(outputs), kThreads, 0, stream>>>(x, outer, n, inner, out);
  }
  return static_cast<int>(cudaGetLastError());
}

int LaunchMaxDim(const float* x, int64_t outer, int64_t n, int64_t inner, float* out,
                 CUstream_st* stream) {
  const int64_t outputs = outer * inner;
  if (outputs == 0) return static_cast<int>(cudaSuccess);
  MaxDimKernel<<<BlocksFor(outputs), kThreads, 0, stream>>>(x, outer, n, inner, out);
  return static_cast<int>(cudaGetLastError());
}

int LaunchMaxDimBackward(const float* x, const float* out, const float* dout, int64_t outer,
                         int64_t n, int64_t inner, float* dx, CUstream_st* stream) {
  const int64_t outputs = outer * inner;
  if (outputs == 0 || n == 0) return static_cast<int>(cudaSuccess);
  MaxDimBackwardKernel<<<BlocksFor(outputs), kThreads, 0, stream>>>(x, out, dout, outer, n,
                                                                    inner, dx);
  return static_cast<int>(cudaGetLastError());
}

int LaunchBroadcastDim(const float* x, int64_t outer, int64_t n, int64_t inner, float* out,
                       CUstream_st* stream) {
  const int64_t total = outer * n * inner;
  if (total == 0) return static_cast<int>(cudaSuccess);
  BroadcastDimKernel<<<BlocksFor(total), kThreads, 0, stream>>>(x, outer, n, inner, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
