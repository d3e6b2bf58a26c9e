// cpu 2-D convolution (runtime/cpu/conv2d.h) on a CUDA device: NCHW, forward and backward, as
// torch.nn.functional.conv2d, with the CPU kernel's parameters (stride, padding, dilation,
// groups; depthwise is groups == C) and shapes (cpu::Conv2dOutputShape).
//
//   cpu::Conv2dParams p{.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 32};
//   STRATA_ASSIGN_OR_RETURN(Shape y_shape, cpu::Conv2dOutputShape(x.shape(), w.shape(), p));
//   STRATA_RETURN_IF_ERROR(cuda::Conv2dForward(stream, x, w, b, y, p, Tensor()));
//   STRATA_RETURN_IF_ERROR(cuda::Conv2dBackward(stream, x, w, dy, dx, dw, db, p, Tensor(),
//                                               GradMode::kAccumulate));
//
// The kernels are direct (conv2d_kernel.cu): one thread per output element forward, dx as the
// transposed direct convolution (one thread per input element), dw one block per weight element
// reducing over the batch and the output positions in a fixed order, db one block per output
// channel. Sums are f32; nothing uses atomics, so results are reproducible run to run (they may
// differ from the CPU's GEMM in the last bits). They need no scratch memory: `workspace` keeps
// the CPU kernel's argument order and may be undefined (Conv2dWorkspaceBytes is 0).
// Every tensor is contiguous f32 on a CUDA device.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "runtime/cpu/conv2d.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// Bytes of device scratch memory that Conv2dForward and Conv2dBackward need: 0.
size_t Conv2dWorkspaceBytes(const Shape& x, const Shape& w, const cpu::Conv2dParams& p);

// x (N, C, H, W), w (OC, C/groups, KH, KW), b (OC) or undefined, y (N, OC, OH, OW).
absl::Status Conv2dForward(CUstream_st* stream, const Tensor& x, const Tensor& w, const Tensor& b,
                           const Tensor& y, const cpu::Conv2dParams& p, const Tensor& workspace);

// dy (N, OC, OH, OW) -> dx (like x, overwritten), dw (like w), db (OC); any of them may be
// undefined (skipped). `mode` applies to dw and db. Only dw reads x: without dw, x may be
// undefined (dx, or dy for db alone, gives the shapes).
absl::Status Conv2dBackward(CUstream_st* stream, const Tensor& x, const Tensor& w,
                            const Tensor& dy, const Tensor& dx, const Tensor& dw, const Tensor& db,
                            const cpu::Conv2dParams& p, const Tensor& workspace,
                            cpu::GradMode mode = cpu::GradMode::kOverwrite);

}  // namespace strata::cuda
