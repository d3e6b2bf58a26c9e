// 2-D convolution over NCHW tensors, forward and backward, as torch.nn.functional.conv2d.
//
//   Conv2dParams p{.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 32};
//   STRATA_ASSIGN_OR_RETURN(Shape y_shape, Conv2dOutputShape(x.shape(), w.shape(), p));
//   std::vector<float> ws(Conv2dWorkspaceBytes(x.shape(), w.shape(), p, NumThreads()) / sizeof(float));
//   STRATA_RETURN_IF_ERROR(Conv2dForward(x, w, b, y, p, absl::MakeSpan(ws)));
//   STRATA_RETURN_IF_ERROR(Conv2dBackward(x, w, dy, dx, dw, db, p, absl::MakeSpan(ws)));
//
// Paths: depthwise (groups == C, OC a multiple of C) is direct: with AVX-512, a 3x3 kernel,
// stride 1 or 2 and rows of at most 16 floats, one vector register per row (Note [depthwise
// rows in registers]); otherwise long multiply-adds over flattened padded planes, split into
// stride phases for strides > 1 (Note [depthwise on flattened padded planes]); a 1x1, stride 1, unpadded convolution is a plain GEMM on the input;
// with AVX-512, an ungrouped 3x3 stride-1 convolution with C a multiple of 16 and OC of 32 runs
// a register-blocked direct kernel, dx as the transposed convolution (Note [direct 3x3
// convolution]); everything else is im2col + sgemm per group. Work is split across threads,
// each with its own slice of the workspace (after a part shared by all threads on the direct
// path); a smaller workspace uses fewer threads, and a workspace too small for one thread is an
// error.
#pragma once

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

namespace strata::cpu {

struct Conv2dParams {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;
};

// x is (N, C, H, W), w is (OC, C / groups, KH, KW); returns (N, OC, OH, OW). Errors name the
// field (stride, padding, dilation, groups, channels) that makes the convolution impossible.
absl::StatusOr<Shape> Conv2dOutputShape(const Shape& x, const Shape& w, const Conv2dParams& p);

// Scratch bytes for Conv2dForward and Conv2dBackward when up to `num_threads` threads run (a
// smaller workspace makes the kernels use fewer threads, down to one).
size_t Conv2dWorkspaceBytes(const Shape& x, const Shape& w, const Conv2dParams& p,
                            int num_threads);

// x (N, C, H, W), w (OC, C/groups, KH, KW), b (OC) or undefined, y (N, OC, OH, OW). Contiguous f32.
absl::Status Conv2dForward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                           const Conv2dParams& p, absl::Span<float> workspace);

// dy (N, OC, OH, OW) -> dx (like x), dw (like w), db (OC); any of them may be undefined (skipped).
// `mode` applies to dw and db. Only dw reads x: without dw, x may be undefined (dx, or dy for db
// alone, gives the shapes), so a convolution whose weight does not train need not keep its input.
absl::Status Conv2dBackward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor& dx,
                            const Tensor& dw, const Tensor& db, const Conv2dParams& p,
                            absl::Span<float> workspace, GradMode mode = GradMode::kOverwrite);

}  // namespace strata::cpu
