// Softmax's and log-softmax's kernels (softmax_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// All (rows, c), one block per row. out may alias x; dx may alias dy.
int LaunchSoftmaxForward(const float* x, float* out, int64_t rows, int64_t c, CUstream_st* stream);
int LaunchSoftmaxBackward(const float* y, const float* dy, float* dx, int64_t rows, int64_t c,
                          CUstream_st* stream);
int LaunchLogSoftmaxForward(const float* x, float* out, int64_t rows, int64_t c,
                            CUstream_st* stream);
int LaunchLogSoftmaxBackward(const float* y, const float* dy, float* dx, int64_t rows, int64_t c,
                             CUstream_st* stream);

}  // namespace strata::cuda::internal
