// RmsNorm's kernels (rmsnorm_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// x, y (rows, c); gamma (c); rstd (rows). One block per row.
int LaunchRmsNormForward(const float* x, const float* gamma, float eps, int64_t rows, int64_t c,
                         float* y, float* rstd, CUstream_st* stream);

// Floats of workspace LaunchRmsNormBackward needs for dgamma.
int64_t RmsNormBackwardWorkspaceFloats(int64_t rows, int64_t c);

// dx and dgamma may be null (skipped); dx may alias dy. workspace:
// RmsNormBackwardWorkspaceFloats(rows, c) floats when dgamma is given.
int LaunchRmsNormBackward(const float* x, const float* gamma, const float* rstd, const float* dy,
                          float* dx, float* dgamma, float* workspace, bool accumulate,
                          int64_t rows, int64_t c, CUstream_st* stream);

}  // namespace strata::cuda::internal
