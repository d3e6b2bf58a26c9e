// The BatchNorm2d kernels (batchnorm_kernel.cu): plain types, see cuda_status.h. x, y, dy and dx
// are contiguous f32 (n, c, hw) on the device; per-channel arrays hold c floats; a nullptr
// output is skipped. Each returns the launch's cudaError_t.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// n * hw >= 2. running_mean and running_var both or neither.
int LaunchBatchNorm2dTrainForward(const float* x, const float* gamma, const float* beta,
                                  float eps, float* y, float* save_mean, float* save_rstd,
                                  float* running_mean, float* running_var, float momentum,
                                  int64_t n, int64_t c, int64_t hw, CUstream_st* stream);

int LaunchBatchNorm2dTrainBackward(const float* x, const float* gamma, const float* save_mean,
                                   const float* save_rstd, const float* dy, float* dx,
                                   float* dgamma, float* dbeta, bool accumulate, int64_t n,
                                   int64_t c, int64_t hw, CUstream_st* stream);

int LaunchBatchNorm2dFrozenForward(const float* x, const float* gamma, const float* beta,
                                   const float* running_mean, const float* running_var, float eps,
                                   float* y, int64_t n, int64_t c, int64_t hw,
                                   CUstream_st* stream);

// x may be nullptr when dgamma is.
int LaunchBatchNorm2dFrozenBackward(const float* x, const float* gamma, const float* running_mean,
                                    const float* running_var, float eps, const float* dy,
                                    float* dx, float* dgamma, float* dbeta, bool accumulate,
                                    int64_t n, int64_t c, int64_t hw, CUstream_st* stream);

}  // namespace strata::cuda::internal
