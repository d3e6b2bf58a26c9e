// Softmax and log-softmax: one block per row (RowThreads(c) threads, looping over wider rows).
// Every output element is written by the thread that read its inputs, after the row's reductions,
// so out may alias x and dx may alias dy. The log-softmax sums are taken in double, as the CPU
// kernel's.
#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/softmax_kernel.h"

namespace strata::cuda::internal {
namespace {

// The row maximum, 0 for an all -inf row, which then gives NaN as PyTorch does (and the CPU
// log-softmax; the CPU softmax's vectorized exp clamps -inf to -87.3 and gives a uniform row).
__device__ __forceinline__ float RowMax(const float* in, int64_t c, float* shared) {
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < c; i += blockDim.x) m = fmaxf(m, in[i]);
  m = BlockMax(m, shared);
  return m == -INFINITY ? 0.0f : m;
}

__global__ void SoftmaxForwardKernel(const float* x, float* out, int64_t rows, int64_t c) {
  __shared__ float shared[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* in = x + r * c;
    const float m = RowMax(in, c, shared);
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) sum += expf(in[i] - m);
    const float inv = 1.0f / BlockSum(sum, shared);
    float* o = out + r * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) o[i] = expf(in[i] - m) * inv;
  }
}

// dx = y (dy - y . dy).
__global__ void SoftmaxBackwardKernel(const float* y, const float* dy, float* dx, int64_t rows,
                                      int64_t c) {
  __shared__ float shared[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* yr = y + r * c;
    const float* dyr = dy + r * c;
    float dot = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) dot += yr[i] * dyr[i];
    dot = BlockSum(dot, shared);
    float* dxr = dx + r * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) dxr[i] = yr[i] * (dyr[i] - dot);
  }
}

// out = x - max - log(sum(exp(x - max))).
__global__ void LogSoftmaxForwardKernel(const float* x, float* out, int64_t rows, int64_t c) {
  __shared__ float shared[kWarp];
  __shared__ double shared_d[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* in = x + r * c;
    const float m = RowMax(in, c, shared);
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      sum += exp(static_cast<double>(in[i] - m));
    }
    const float shift = m + static_cast<float>(log(BlockSum(sum, shared_d)));
    float* o = out + r * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) o[i] = in[i] - shift;
  }
}

// dx = dy - exp(y) sum(dy).
__global__ void LogSoftmaxBackwardKernel(const float* y, const float* dy, float* dx, int64_t rows,
                                         int64_t c) {
  __shared__ double shared_d[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* yr = y + r * c;
    const float* dyr = dy + r * c;
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) sum += dyr[i];
    const float s = static_cast<float>(BlockSum(sum, shared_d));
    float* dxr = dx + r * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) dxr[i] = dyr[i] - expf(yr[i]) * s;
  }
}

}  // namespace

int LaunchSoftmaxForward(const float* x, float* out, int64_t rows, int64_t c,
                         CUstream_st* stream) {
  if (rows == 0 || c == 0) return static_cast<int>(cudaSuccess);
  SoftmaxForwardKernel<<<RowBlocks(rows), RowThreads(c), 0, stream>>>(x, out, rows, c);
  return static_cast<int>(cudaGetLastError());
}

int LaunchSoftmaxBackward(const float* y, const float* dy, float* dx, int64_t rows, int64_t c,
                          CUstream_st* stream) {
  if (rows == 0 || c == 0) return static_cast<int>(cudaSuccess);
  SoftmaxBackwardKernel<<<RowBlocks(rows), RowThreads(c), 0, stream>>>(y, dy, dx, rows, c);
  return static_cast<int>(cudaGetLastError());
}

int LaunchLogSoftmaxForward(const float* x, float* out, int64_t rows, int64_t c,
                            CUstream_st* stream) {
  if (rows == 0 || c == 0) return static_cast<int>(cudaSuccess);
  LogSoftmaxForwardKernel<<<RowBlocks(rows), RowThreads(c), 0, stream>>>(x, out, rows, c);
  return static_cast<int>(cudaGetLastError());
}

int LaunchLogSoftmaxBackward(const float* y, const float* dy, float* dx, int64_t rows, int64_t c,
                             CUstream_st* stream) {
  if (rows == 0 || c == 0) return static_cast<int>(cudaSuccess);
  LogSoftmaxBackwardKernel<<<RowBlocks(rows), RowThreads(c), 0, stream>>>(y, dy, dx, rows, c);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
