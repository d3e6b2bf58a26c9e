// The ReLU-mask kernels (relu_mask_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// mask[i] = 0 < x[i] < upper, over n contiguous elements; returns the launch's cudaError_t.
int LaunchReluMask(const float* x, float upper, uint8_t* mask, int64_t n, CUstream_st* stream);

// dx[i] = mask[i] ? dout[i] : 0 (dx may be dout); returns the launch's cudaError_t.
int LaunchMaskedBackward(const uint8_t* mask, const float* dout, float* dx, int64_t n,
                         CUstream_st* stream);

}  // namespace strata::cuda::internal
