// RMS norm: one block per row (RowThreads(c) threads, looping over wider rows), f32 sums reduced
// with BlockSum; the backward's dgamma takes the two deterministic passes of kernel_util.cuh
// (group partial sums into the workspace, then a column sum in group order).
#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/rmsnorm_kernel.h"

namespace strata::cuda::internal {
namespace {

__global__ void RmsNormForwardKernel(const float* x, const float* gamma, float eps, int64_t rows,
                                     int64_t c, float* y, float* rstd) {
  __shared__ float shared[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* in = x + r * c;
    float sq = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) sq += in[i] * in[i];
    const float s = 1.0f / sqrtf(BlockSum(sq, shared) / static_cast<float>(c) + eps);
    float* out = y + r * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) out[i] = in[i] * s * gamma[i];
    if (threadIdx.x == 0) rstd[r] = s;
  }
}

// dx = s (g dy - x s^2 mean(g dy x)). Each element of dx is written by the thread that read its
// dy, after the row's sum: dx may alias dy.
__global__ void RmsNormInputGradKernel(const float* x, const float* gamma, const float* rstd,
                                       const float* dy, float* dx, int64_t rows, int64_t c) {
  __shared__ float shared[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* in = x + r * c;
    const float* d = dy + r * c;
    const float s = rstd[r];
    float sum_gdx = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) sum_gdx += gamma[i] * d[i] * in[i];
    const float k = s * s * BlockSum(sum_gdx, shared) / static_cast<float>(c);
    float* out = dx + r * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      out[i] = s * (gamma[i] * d[i] - in[i] * k);
    }
  }
}

}  // namespace

int LaunchRmsNormForward(const float* x, const float* gamma, float eps, int64_t rows, int64_t c,
                         float* y, float* rstd, CUstream_st* stream) {
  if (rows == 0 || c == 0) return static_cast<int>(cudaSuccess);
  RmsNormForwardKernel<<<RowBlocks(rows), RowThreads(c), 0, stream>>>(x, gamma, eps, rows, c, y,
                                                                      rstd);
  return static_cast<int>(cudaGetLastError());
}

int64_t RmsNormBackwardWorkspaceFloats(int64_t rows, int64_t c) {
  return NormGradGroups(rows) * c;
}

int LaunchRmsNormBackward(const float* x, const float* gamma, const float* rstd, const float* dy,
                          float* dx, float* dgamma, float* workspace, bool accumulate,
                          int64_t rows, int64_t c, CUstream_st* stream) {
  if (c == 0) return static_cast<int>(cudaSuccess);
  if (dgamma != nullptr) {  // first: dx may alias dy
    const int64_t groups = NormGradGroups(rows);
    const dim3 grid(static_cast<unsigned>((c + kThreads - 1) / kThreads),
                    static_cast<unsigned>(groups));
    ColumnPartialsKernel<false><<<grid, kThreads, 0, stream>>>(x, dy, nullptr, rstd, rows, c,
                                                               groups, workspace, nullptr);
    int err = static_cast<int>(cudaGetLastError());
    if (err != 0) return err;
    err = LaunchColumnSum(workspace, groups, c, accumulate, dgamma, stream);
    if (err != 0) return err;
  }
  if (dx != nullptr && rows > 0) {
    RmsNormInputGradKernel<<<RowBlocks(rows), RowThreads(c), 0, stream>>>(x, gamma, rstd, dy, dx,
                                                                          rows, c);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
