// Elementwise passes over a matrix and a column sum; the products themselves are cuBLAS's.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "runtime/cuda/gemm_kernel.h"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}

// c (batch, m, n) strided, = beta * c (0 where beta == 0).
template <typename T>
__global__ void ScaleMatrixKernel(T* __restrict__ c, int64_t batch, int64_t m, int64_t n,
                                  int64_t bs, int64_t rs, int64_t cs, float beta) {
  const int64_t total = batch * m * n;
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t k = i % n;
    const int64_t r = (i / n) % m;
    const int64_t b = i / (m * n);
    T* p = c + b * bs + r * rs + k * cs;
    *p = beta == 0.0f ? FromFloat<T>(0.0f) : FromFloat<T>(beta * ToFloat(*p));
  }
}

// c (m, n) strided = bias (n) + addend (m, n, contiguous); either may be null.
template <typename T>
__global__ void FillBiasAddendKernel(T* c, int64_t m, int64_t n, int64_t rs, int64_t cs,
                                     const T* bias, const T* addend) {
  const int64_t total = m * n;
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t k = i % n;
    const int64_t r = i / n;
    float v = 0.0f;
    if (bias != nullptr) v += ToFloat(bias[k]);
    if (addend != nullptr) v += ToFloat(addend[i]);
    c[r * rs + k * cs] = FromFloat<T>(v);
  }
}

// x (rows, cols) -> out (cols). A block of kSumCols x kSumRows threads owns kSumCols columns:
// thread (tx, ty) sums rows ty, ty + kSumRows, ... of column tx (coalesced across tx), then thread
// (tx, 0) adds the kSumRows partial sums in order.
constexpr int kSumCols = 32;
constexpr int kSumRows = 32;

template <typename T>
__global__ void ColumnSumsKernel(const T* __restrict__ x, int64_t rows, int64_t cols,
                                 float* __restrict__ out, bool accumulate) {
  __shared__ float partial[kSumRows][kSumCols + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kSumCols + tx;
  float sum = 0.0f;
  if (col < cols) {
    for (int64_t r = ty; r < rows; r += kSumRows) sum += ToFloat(x[r * cols + col]);
  }
  partial[ty][tx] = sum;
  __syncthreads();
  if (ty == 0 && col < cols) {
    float total = 0.0f;
    for (int j = 0; j < kSumRows; ++j) total += partial[j][tx];
    out[col] = accumulate ? out[col] + total : total;
  }
}

// Each launch names the element type: the kernels are templates of it.
template <typename T>
void ScaleMatrix(void* c, int64_t batch, int64_t m, int64_t n, int64_t bs, int64_t rs, int64_t cs,
                 float beta, int blocks, CUstream_st* stream) {
  ScaleMatrixKernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<T*>(c), batch, m, n, bs, rs,
                                                        cs, beta);
}

template <typename T>
void FillBiasAddend(void* c, int64_t m, int64_t n, int64_t rs, int64_t cs, const void* bias,
                    const void* addend, int blocks, CUstream_st* stream) {
  FillBiasAddendKernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<T*>(c), m, n, rs, cs,
                                                           static_cast<const T*>(bias),
                                                           static_cast<const T*>(addend));
}

template <typename T>
void ColumnSums(const void* x, int64_t rows, int64_t cols, float* out, bool accumulate,
                dim3 blocks, dim3 threads, CUstream_st* stream) {
  ColumnSumsKernel<T><<<blocks, threads, 0, stream>>>(static_cast<const T*>(x), rows, cols, out,
                                                      accumulate);
}

}  // namespace

int LaunchScaleMatrix(void* c, GemmElem elem, int64_t batch, int64_t m, int64_t n, int64_t bs,
                      int64_t rs, int64_t cs, float beta, CUstream_st* stream) {
  const int64_t total = batch * m * n;
  if (total == 0) return static_cast<int>(cudaSuccess);
  const int blocks = BlocksFor(total);
  switch (elem) {
    case GemmElem::kF32:
      ScaleMatrix<float>(c, batch, m, n, bs, rs, cs, beta, blocks, stream);
      break;
    case GemmElem::kBf16:
      ScaleMatrix<__nv_bfloat16>(c, batch, m, n, bs, rs, cs, beta, blocks, stream);
      break;
    case GemmElem::kF16:
      ScaleMatrix<__half>(c, batch, m, n, bs, rs, cs, beta, blocks, stream);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

int LaunchFillBiasAddend(void* c, GemmElem elem, int64_t m, int64_t n, int64_t rs, int64_t cs,
                         const void* bias, const void* addend, CUstream_st* stream) {
  const int64_t total = m * n;
  if (total == 0) return static_cast<int>(cudaSuccess);
  const int blocks = BlocksFor(total);
  switch (elem) {
    case GemmElem::kF32:
      FillBiasAddend<float>(c, m, n, rs, cs, bias, addend, blocks, stream);
      break;
    case GemmElem::kBf16:
      FillBiasAddend<__nv_bfloat16>(c, m, n, rs, cs, bias, addend, blocks, stream);
      break;
    case GemmElem::kF16:
      FillBiasAddend<__half>(c, m, n, rs, cs, bias, addend, blocks, stream);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

int LaunchColumnSums(const void* x, GemmElem elem, int64_t rows, int64_t cols, float* out,
                     bool accumulate, CUstream_st* stream) {
  if (cols == 0) return static_cast<int>(cudaSuccess);
  const dim3 threads(kSumCols, kSumRows);
  const dim3 blocks(static_cast<unsigned>((cols + kSumCols - 1) / kSumCols));
  switch (elem) {
    case GemmElem::kF32:
      ColumnSums<float>(x, rows, cols, out, accumulate, blocks, threads, stream);
      break;
    case GemmElem::kBf16:
      ColumnSums<__nv_bfloat16>(x, rows, cols, out, accumulate, blocks, threads, stream);
      break;
    case GemmElem::kF16:
      ColumnSums<__half>(x, rows, cols, out, accumulate, blocks, threads, stream);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
