// cpu::GeluForward, ReluBackward, ... (runtime/cpu/activation.h) on a CUDA device: activations,
// forward and backward, on f32 or bf16 tensors (fp32 arithmetic, bf16 stored rounded to nearest
// even).
//
//   STRATA_RETURN_IF_ERROR(cuda::GeluForward(stream, h, h_act));       // GPT-2's tanh form
//   STRATA_RETURN_IF_ERROR(cuda::GeluBackward(stream, h, dh_act, dh));  // the forward *input*
//   STRATA_RETURN_IF_ERROR(cuda::Relu6Forward(stream, x, x));           // in place
//
// Backward kernels take the forward input x. Gradients at kinks follow PyTorch: relu'(0) = 0;
// relu6' = 1 on (0, 6) only. Tensors are on a CUDA device and may be strided (at most 8
// dimensions once merged, as cuda/elementwise.h); out may alias x. ReLU and ReLU6 are the CPU
// kernel's bit for bit; the others use the device's expf, tanhf, log1pf and erfcf and agree with
// the CPU to about 1e-6 relative.
//
// As every CUDA launcher: `stream` (a cudaStream_t) orders the work, the call returns once it is
// enqueued, and errors of the launch itself come back as a Status (cuda_status.h).
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as gelu(approximate='tanh').
absl::Status GeluForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status GeluBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                          const Tensor& dx);

absl::Status ReluForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status ReluBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                          const Tensor& dx);

// out = min(max(x, 0), 6).
absl::Status Relu6Forward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status Relu6Backward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                           const Tensor& dx);

// out = 1 / (1 + exp(-x)).
absl::Status SigmoidForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status SigmoidBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                             const Tensor& dx);

absl::Status TanhForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status TanhBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                          const Tensor& dx);

// out = x sigmoid(x) (SiLU, swish).
absl::Status SiluForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status SiluBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                          const Tensor& dx);

// out = silu(gate) * up: the SwiGLU of Llama's MLP in one pass over both inputs.
absl::Status SwiGluForward(CUstream_st* stream, const Tensor& gate, const Tensor& up,
                           const Tensor& out);
// dgate = dout up silu'(gate), dup = dout silu(gate); an undefined output is skipped. dup may
// alias dout; nothing else may alias.
absl::Status SwiGluBackward(CUstream_st* stream, const Tensor& gate, const Tensor& up,
                            const Tensor& dout, const Tensor& dgate, const Tensor& dup);

// out = log(1 + exp(x)), and x itself above 20, as PyTorch's softplus (beta 1, threshold 20).
absl::Status SoftplusForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status SoftplusBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                              const Tensor& dx);

// out = 0.5 x (1 + erf(x / sqrt(2))), as gelu(approximate='none').
absl::Status GeluExactForward(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status GeluExactBackward(CUstream_st* stream, const Tensor& x, const Tensor& dout,
                               const Tensor& dx);

}  // namespace strata::cuda
