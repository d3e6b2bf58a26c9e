// The pooling kernels (pooling_kernel.cu): plain types, see cuda_status.h. Tensors are contiguous
// f32 NCHW on the device; `planes` is N * C. Each returns the launch's cudaError_t.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

struct PoolShape {
  int64_t planes, h, w, oh, ow;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
};

int LaunchMaxPool2dForward(const float* x, float* y, const PoolShape& s, CUstream_st* stream);
int LaunchMaxPool2dBackward(const float* x, const float* dy, float* dx, const PoolShape& s,
                            CUstream_st* stream);
int LaunchAvgPool2dForward(const float* x, float* y, const PoolShape& s, CUstream_st* stream);
int LaunchAvgPool2dBackward(const float* dy, float* dx, const PoolShape& s, CUstream_st* stream);
// x (planes, hw) -> y (planes); dy (planes) -> dx (planes, hw).
int LaunchGlobalAvgPoolForward(const float* x, float* y, int64_t planes, int64_t hw,
                               CUstream_st* stream);
int LaunchGlobalAvgPoolBackward(const float* dy, float* dx, int64_t planes, int64_t hw,
                                CUstream_st* stream);

}  // namespace strata::cuda::internal
