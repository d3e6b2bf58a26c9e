// cpu pooling (runtime/cpu/pooling.h) on a CUDA device: 2-D max and average pooling and global
// average pooling over NCHW tensors, as PyTorch's max_pool2d, avg_pool2d (count_include_pad =
// true) and adaptive_avg_pool2d(1).
//
//   cpu::Pool2dParams p{.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2,
//                       .pad_h = 1, .pad_w = 1};
//   STRATA_ASSIGN_OR_RETURN(Shape y_shape, cpu::Pool2dOutputShape(x.shape(), p));
//   STRATA_RETURN_IF_ERROR(cuda::MaxPool2dForward(stream, x, y, p));
//   STRATA_RETURN_IF_ERROR(cuda::MaxPool2dBackward(stream, x, dy, dx, p));  // argmax from x
//
// Every tensor is contiguous f32 on a CUDA device; the shapes and parameters are checked as the
// CPU kernels check them (cpu::Pool2dOutputShape). Max pooling (both directions), average pooling
// (both directions) and GlobalAvgPoolBackward give the CPU's results bit for bit: each backward
// gathers, per input element, the outputs whose windows hold it in the CPU's order (no atomics).
// GlobalAvgPoolForward sums each plane as a tree, so its last bits may differ from the CPU's.
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/pooling.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// x (N, C, H, W), y (N, C, OH, OW). Padding never wins a max; the first maximum (or a NaN) does.
absl::Status MaxPool2dForward(CUstream_st* stream, const Tensor& x, const Tensor& y,
                              const cpu::Pool2dParams& p);
// dy (N, C, OH, OW) -> dx (N, C, H, W), overwritten.
absl::Status MaxPool2dBackward(CUstream_st* stream, const Tensor& x, const Tensor& dy,
                               const Tensor& dx, const cpu::Pool2dParams& p);

// Average over kernel_h * kernel_w elements, padding counted as zeros.
absl::Status AvgPool2dForward(CUstream_st* stream, const Tensor& x, const Tensor& y,
                              const cpu::Pool2dParams& p);
absl::Status AvgPool2dBackward(CUstream_st* stream, const Tensor& dy, const Tensor& dx,
                               const cpu::Pool2dParams& p);

// x (N, C, H, W) -> y (N, C); dy (N, C) -> dx (N, C, H, W).
absl::Status GlobalAvgPoolForward(CUstream_st* stream, const Tensor& x, const Tensor& y);
absl::Status GlobalAvgPoolBackward(CUstream_st* stream, const Tensor& dy, const Tensor& dx);

}  // namespace strata::cuda
