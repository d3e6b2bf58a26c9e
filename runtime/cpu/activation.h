// Activations, forward and backward, on f32 or bf16 tensors (fp32 arithmetic).
//
//   STRATA_RETURN_IF_ERROR(GeluForward(h, h_act));            // GPT-2's tanh approximation
//   STRATA_RETURN_IF_ERROR(GeluBackward(h, dh_act, dh));       // takes the forward *input*
//   STRATA_RETURN_IF_ERROR(Relu6Forward(x, x));                 // in place
//
// Backward kernels take the forward input x. Gradients at kinks follow PyTorch: relu'(0) = 0;
// relu6' = 1 on (0, 6) only. Tensors may be strided; out may alias x.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as gelu(approximate='tanh').
absl::Status GeluForward(const Tensor& x, const Tensor& out);
absl::Status GeluBackward(const Tensor& x, const Tensor& dout, const Tensor& dx);

absl::Status ReluForward(const Tensor& x, const Tensor& out);
absl::Status ReluBackward(const Tensor& x, const Tensor& dout, const Tensor& dx);

// out = min(max(x, 0), 6).
absl::Status Relu6Forward(const Tensor& x, const Tensor& out);
absl::Status Relu6Backward(const Tensor& x, const Tensor& dout, const Tensor& dx);

}  // namespace strata::cpu
