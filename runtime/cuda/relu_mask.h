// cpu::ReluMask and cpu::MaskedBackward (runtime/cpu/activation.h) on a CUDA device: the one-byte
// condition of a ReLU's gradient, and the gradient through it (Note [relu masks] in
// graph/passes/save_relu_masks.cc).
//
//   STRATA_RETURN_IF_ERROR(ReluMask(stream, x, 6.0f, mask));     // mask = 0 < x < 6, u8
//   STRATA_RETURN_IF_ERROR(MaskedBackward(stream, mask, dy, dx)); // dx = mask ? dy : 0
//
// As every CUDA launcher: enqueued on `stream`, the CPU kernel's checks, tensors on the device.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// x f32 contiguous, mask u8 of x's shape, contiguous.
absl::Status ReluMask(CUstream_st* stream, const Tensor& x, float upper, const Tensor& mask);

// mask u8, dout and dx f32, all of one shape and contiguous; dx may be dout.
absl::Status MaskedBackward(CUstream_st* stream, const Tensor& mask, const Tensor& dout,
                            const Tensor& dx);

}  // namespace strata::cuda
