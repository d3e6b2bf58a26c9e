#include "optim/cuda/grad_norm_kernel.h"

#include <cuda_runtime.h>

#include "runtime/cuda/kernel_util.cuh"

namespace strata::optim::internal {
namespace {

using cuda::internal::BlockSum;
using cuda::internal::BlocksFor;
using cuda::internal::GlobalIndex;
using cuda::internal::GridStride;
using cuda::internal::kThreads;
using cuda::internal::kWarp;

// Blocks of the first pass: at most 1024, so that the second pass's one block sums them.
int NormBlocks(int64_t n) { return std::min(BlocksFor(n), 1024); }

__global__ void PartialSquaresKernel(const float* x, int64_t n, double* partial) {
  __shared__ double shared[kWarp];
  double sum = 0.0;
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    const double v = x[i];
    sum += v * v;
  }
  sum = BlockSum(sum, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void NormKernel(const double* partial, int blocks, float* norm) {
  __shared__ double shared[kWarp];
  double sum = 0.0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) sum += partial[b];
  sum = BlockSum(sum, shared);
  if (threadIdx.x == 0) *norm = static_cast<float>(sqrt(sum));
}

__global__ void GlobalNormKernel(GlobalNormChunk chunk, int squared_inputs, bool first, bool last,
                                 bool squared_output, double* acc, float* out) {
  if (threadIdx.x != 0) return;  // a handful of scalars, in the CPU's order
  double sum = first ? 0.0 : *acc;
  for (int i = 0; i < chunk.count; ++i) {
    const double v = *chunk.values[i];
    sum += chunk.offset + i < squared_inputs ? v : v * v;
  }
  if (last) {
    *out = static_cast<float>(squared_output ? sum : sqrt(sum));
  } else {
    *acc = sum;
  }
}

__global__ void ClipKernel(float* x, int64_t n, const float* norm, double max_norm,
                           double scale) {
  const double total = *norm;
  if (!isfinite(total)) return;
  double coef = 1.0 / scale;
  if (max_norm > 0) {
    const double clip = max_norm / (total / scale + 1e-6);
    if (clip < 1.0) coef *= clip;
  }
  if (coef == 1.0) return;
  const float c = static_cast<float>(coef);
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) x[i] = __fmul_rn(x[i], c);
}

}  // namespace

int64_t L2NormWorkspaceDoubles(int64_t n) { return NormBlocks(n); }

int LaunchL2Norm(const float* x, int64_t n, float* norm, double* workspace, CUstream_st* stream) {
  const int blocks = NormBlocks(n);
  PartialSquaresKernel<<<blocks, kThreads, 0, stream>>>(x, n, workspace);
  int err = static_cast<int>(cudaGetLastError());
  if (err != 0) return err;
  NormKernel<<<1, kThreads, 0, stream>>>(workspace, blocks, norm);
  return static_cast<int>(cudaGetLastError());
}

int LaunchGlobalNorm(const GlobalNormChunk& chunk, int squared_inputs, bool first, bool last,
                     bool squared_output, double* acc, float* out, CUstream_st* stream) {
  GlobalNormKernel<<<1, kWarp, 0, stream>>>(chunk, squared_inputs, first, last, squared_output,
                                            acc, out);
  return static_cast<int>(cudaGetLastError());
}

int LaunchClipByNorm(float* x, int64_t n, const float* norm, double max_norm, double scale,
                     CUstream_st* stream) {
  if (n == 0) return 0;
  ClipKernel<<<BlocksFor(n), kThreads, 0, stream>>>(x, n, norm, max_norm, scale);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::optim::internal
