// The direct 2-D convolution kernels (conv2d_kernel.cu): plain types, see cuda_status.h. x is
// (n, c, h, w), w (oc, c / groups, kh, kw), y and dy (n, oc, oh, ow), b and db (oc), all
// contiguous f32 on the device. Each returns the launch's cudaError_t.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

struct ConvShape {
  int64_t n, c, h, w;     // x
  int64_t oc, kh, kw;     // w; its channels per group are c / groups
  int64_t oh, ow;         // y
  int64_t groups;
  int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// y = conv(x, w) (+ b when b is not nullptr).
int LaunchConv2dForward(const float* x, const float* w, const float* b, float* y,
                        const ConvShape& s, CUstream_st* stream);
// dx = the transposed convolution of dy with w (overwritten).
int LaunchConv2dInputGrad(const float* w, const float* dy, float* dx, const ConvShape& s,
                          CUstream_st* stream);
// dw (+)= sum over the batch and the output positions (accumulate: add into dw).
int LaunchConv2dWeightGrad(const float* x, const float* dy, float* dw, bool accumulate,
                           const ConvShape& s, CUstream_st* stream);
// db (+)= the sum of dy (n, oc, hw) over n and hw, per channel.
int LaunchConv2dBiasGrad(const float* dy, float* db, int64_t n, int64_t oc, int64_t hw,
                         bool accumulate, CUstream_st* stream);

}  // namespace strata::cuda::internal
