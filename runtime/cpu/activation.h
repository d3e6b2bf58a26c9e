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

// What relu's and relu6's backward need of x, in a byte per element instead of four: mask = 1
// where 0 < x < upper (upper = +inf: relu, 6: relu6), else 0. x f32, mask u8, both contiguous and
// of one shape.
absl::Status ReluMask(const Tensor& x, float upper, const Tensor& mask);
// dx = dout where mask, else 0: ReluBackward / Relu6Backward from the mask. dx may alias dout.
absl::Status MaskedBackward(const Tensor& mask, const Tensor& dout, const Tensor& dx);

// out = 1 / (1 + exp(-x)).
absl::Status SigmoidForward(const Tensor& x, const Tensor& out);
absl::Status SigmoidBackward(const Tensor& x, const Tensor& dout, const Tensor& dx);

absl::Status TanhForward(const Tensor& x, const Tensor& out);
absl::Status TanhBackward(const Tensor& x, const Tensor& dout, const Tensor& dx);

// out = x sigmoid(x) (SiLU, swish).
absl::Status SiluForward(const Tensor& x, const Tensor& out);
absl::Status SiluBackward(const Tensor& x, const Tensor& dout, const Tensor& dx);

// out = silu(gate) * up: the SwiGLU of Llama's MLP in one pass over both inputs.
absl::Status SwiGluForward(const Tensor& gate, const Tensor& up, const Tensor& out);
// dgate = dout up silu'(gate), dup = dout silu(gate); an undefined output is skipped. dup may
// alias dout; nothing else may alias.
absl::Status SwiGluBackward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                            const Tensor& dgate, const Tensor& dup);

// out = log(1 + exp(x)), and x itself above 20, as PyTorch's softplus (beta 1, threshold 20).
absl::Status SoftplusForward(const Tensor& x, const Tensor& out);
absl::Status SoftplusBackward(const Tensor& x, const Tensor& dout, const Tensor& dx);

// out = 0.5 x (1 + erf(x / sqrt(2))), as gelu(approximate='none').
absl::Status GeluExactForward(const Tensor& x, const Tensor& out);
absl::Status GeluExactBackward(const Tensor& x, const Tensor& dout, const Tensor& dx);

}  // namespace strata::cpu
