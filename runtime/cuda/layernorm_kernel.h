// LayerNorm's kernels (layernorm_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// x, y (rows, c); gamma, beta (c); mean, rstd (rows). One block per row.
int LaunchLayerNormForward(const float* x, const float* gamma, const float* beta, float eps,
                           int64_t rows, int64_t c, float* y, float* mean, float* rstd,
                           CUstream_st* stream);

// Floats of workspace LaunchLayerNormBackward needs for dgamma and dbeta.
int64_t LayerNormBackwardWorkspaceFloats(int64_t rows, int64_t c);

// dx, dgamma, dbeta and residual may be null (skipped; residual only with dx). dx may alias dy or
// residual. workspace: LayerNormBackwardWorkspaceFloats(rows, c) floats when dgamma or dbeta is
// given.
int LaunchLayerNormBackward(const float* x, const float* gamma, const float* mean,
                            const float* rstd, const float* dy, const float* residual, float* dx,
                            float* dgamma, float* dbeta, float* workspace, bool accumulate,
                            int64_t rows, int64_t c, CUstream_st* stream);

}  // namespace strata::cuda::internal
