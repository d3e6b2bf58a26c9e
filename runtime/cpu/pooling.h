// 2-D max and average pooling and global average pooling over NCHW tensors, as PyTorch's
// max_pool2d, avg_pool2d (count_include_pad = true) and adaptive_avg_pool2d(1).
//
//   Pool2dParams p{.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
//   STRATA_ASSIGN_OR_RETURN(Shape y_shape, Pool2dOutputShape(x.shape(), p));
//   STRATA_RETURN_IF_ERROR(MaxPool2dForward(x, y, p));
//   STRATA_RETURN_IF_ERROR(MaxPool2dBackward(x, dy, dx, p));   // recomputes the argmax from x
//
// Max-pool backward recomputes each window's argmax from x (the first maximum wins, as in
// PyTorch) instead of saving an index tensor: it saves memory, and x is kept for backward anyway.
#pragma once

#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace strata::cpu {

struct Pool2dParams {
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  int pad_h = 0, pad_w = 0;  // at most half the kernel, as PyTorch requires
};

// x is (N, C, H, W); returns (N, C, OH, OW) with floor division.
absl::StatusOr<Shape> Pool2dOutputShape(const Shape& x, const Pool2dParams& p);

// x (N, C, H, W), y (N, C, OH, OW). Padding never wins a max.
absl::Status MaxPool2dForward(const Tensor& x, const Tensor& y, const Pool2dParams& p);
// dy (N, C, OH, OW) -> dx (N, C, H, W).
absl::Status MaxPool2dBackward(const Tensor& x, const Tensor& dy, const Tensor& dx,
                               const Pool2dParams& p);

// Average over kernel_h * kernel_w elements, padding counted as zeros.
absl::Status AvgPool2dForward(const Tensor& x, const Tensor& y, const Pool2dParams& p);
absl::Status AvgPool2dBackward(const Tensor& dy, const Tensor& dx, const Pool2dParams& p);

// x (N, C, H, W) -> y (N, C); dy (N, C) -> dx (N, C, H, W).
absl::Status GlobalAvgPoolForward(const Tensor& x, const Tensor& y);
absl::Status GlobalAvgPoolBackward(const Tensor& dy, const Tensor& dx);

}  // namespace strata::cpu
