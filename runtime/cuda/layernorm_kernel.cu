// Layer norm: one block per row (RowThreads(c) threads, looping over wider rows), f32 sums reduced
// with BlockSum; the backward's dgamma and dbeta take the two deterministic passes of
// kernel_util.cuh (group partial sums into the workspace, then a column sum in group order).
#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/layernorm_kernel.h"

namespace strata::cuda::internal {
namespace {

// As cpu::LayerNormForward: the mean, then the biased variance about it.
__global__ void LayerNormForwardKernel(const float* x, const float* gamma, const float* beta,
                                       float eps, int64_t rows, int64_t c, float* y, float* mean,
                                       float* rstd) {
  __shared__ float shared[kWarp];
  const float n = static_cast<float>(c);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* in = x + r * c;
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) sum += in[i];
    const float m = BlockSum(sum, shared) / n;
    float sq = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) sq += (in[i] - m) * (in[i] - m);
    const float s = 1.0f / sqrtf(BlockSum(sq, shared) / n + eps);
    float* out = y + r * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      out[i] = (in[i] - m) * s * gamma[i] + beta[i];
    }
    if (threadIdx.x == 0) {
      mean[r] = m;
      rstd[r] = s;
    }
  }
}

// dx = [res +] s * (g dy - mean(g dy) - xhat * mean(g dy xhat)). Each element of dx is written by
// the thread that read its dy and residual, after the row's sums: dx may alias either.
__global__ void LayerNormInputGradKernel(const float* x, const float* gamma, const float* mean,
                                         const float* rstd, const float* dy, const float* residual,
                                         float* dx, int64_t rows, int64_t c) {
  __shared__ float shared[kWarp];
  const float n = static_cast<float>(c);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* in = x + r * c;
    const float* d = dy + r * c;
    const float m = mean[r], s = rstd[r];
    float sum_gd = 0.0f, sum_gdx = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      const float gd = gamma[i] * d[i];
      sum_gd += gd;
      sum_gdx += gd * ((in[i] - m) * s);
    }
    const float mean_gd = BlockSum(sum_gd, shared) / n;
    const float mean_gdx = BlockSum(sum_gdx, shared) / n;
    const float* res = residual != nullptr ? residual + r * c : nullptr;
    float* out = dx + r * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      const float v = s * (gamma[i] * d[i] - mean_gd - (in[i] - m) * s * mean_gdx);
      out[i] = res != nullptr ? res[i] + v : v;
    }
  }
}

}  // namespace

int LaunchLayerNormForward(const float* x, const float* gamma, const float* beta, float eps,
                           int64_t rows, int64_t c, float* y, float* mean, float* rstd,
                           CUstream_st* stream) {
  if (rows == 0 || c == 0) return static_cast<int>(cudaSuccess);
  LayerNormForwardKernel<<<RowBlocks(rows), RowThreads(c), 0, stream>>>(x, gamma, beta, eps, rows,
                                                                        c, y, mean, rstd);
  return static_cast<int>(cudaGetLastError());
}

int64_t LayerNormBackwardWorkspaceFloats(int64_t rows, int64_t c) {
  return 2 * NormGradGroups(rows) * c;
}

int LaunchLayerNormBackward(const float* x, const float* gamma, const float* mean,
                            const float* rstd, const float* dy, const float* residual, float* dx,
                            float* dgamma, float* dbeta, float* workspace, bool accumulate,
                            int64_t rows, int64_t c, CUstream_st* stream) {
  if (c == 0) return static_cast<int>(cudaSuccess);
  // The parameter gradients first: dx may alias dy.
  if (dgamma != nullptr || dbeta != nullptr) {
    const int64_t groups = NormGradGroups(rows);
    float* part_g = workspace;
    float* part_b = workspace + groups * c;
    const dim3 grid(static_cast<unsigned>((c + kThreads - 1) / kThreads),
                    static_cast<unsigned>(groups));
    ColumnPartialsKernel<true><<<grid, kThreads, 0, stream>>>(x, dy, mean, rstd, rows, c, groups,
                                                              part_g, part_b);
    int err = static_cast<int>(cudaGetLastError());
    if (err != 0) return err;
    if (dgamma != nullptr) {
      err = LaunchColumnSum(part_g, groups, c, accumulate, dgamma, stream);
      if (err != 0) return err;
    }
    if (dbeta != nullptr) {
      err = LaunchColumnSum(part_b, groups, c, accumulate, dbeta, stream);
      if (err != 0) return err;
    }
  }
  if (dx != nullptr && rows > 0) {
    LayerNormInputGradKernel<<<RowBlocks(rows), RowThreads(c), 0, stream>>>(
        x, gamma, mean, rstd, dy, residual, dx, rows, c);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
