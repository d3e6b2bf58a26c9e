// cpu::CausalAttentionForward/Backward (runtime/cpu/attention.h) on a CUDA device: causal
// multi-head self-attention with grouped-query heads, blocked in the FlashAttention-2 style, so
// that no T x T probability matrix is ever kept; the backward recomputes the probabilities from
// q, k and the saved log-sum-exp.
//
//   // q, k, v are views into the packed (B, T, 3, H, D) output of the qkv projection:
//   Tensor qkv5 = qkv.Reshape({B, T, 3, H, D}).value();
//   Tensor q = qkv5.Select(2, 0).value().Permute({0, 2, 1, 3}).value();   // (B, H, T, D)
//   Tensor o = y.Reshape({B, T, H, D}).value().Permute({0, 2, 1, 3}).value();  // writes (B, T, C)
//   Tensor ws = ...;  // device f32, AttentionWorkspaceBytes(B, H, T, D) bytes, kept across calls
//   STRATA_RETURN_IF_ERROR(cuda::CausalAttentionForward(stream, q, k, v, o, lse, 1 / sqrt(D), ws));
//   STRATA_RETURN_IF_ERROR(
//       cuda::CausalAttentionBackward(stream, q, k, v, lse, dout, dq, dk, dv, scale, ws));
//
// The arguments, layouts and results are the CPU kernel's: the saved state is lse (B, H, T), the
// same log-sum-exp, so either backward takes either forward's lse. Head dimensions up to 128
// (kAttentionMaxHeadDim); larger ones are refused. Tensors are f32 on the device, any strides with
// stride 1 in D (the packed views above), as on the CPU.
//
// The workspace is a device tensor rather than a host span (no launcher allocates per call): the
// backward keeps D_i = dout_i . out_i there, B * H * T floats; the forward needs none but checks it
// as the CPU kernel does, so that one workspace serves both directions. Results are deterministic
// (no atomics) and match the CPU's to f32 rounding; the summation orders differ.
//
// Note [CUDA attention tiles] (attention_kernel.cu) describes the kernels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// Device scratch bytes for either direction.
size_t AttentionWorkspaceBytes(int64_t batch, int64_t heads, int64_t seq, int64_t head_dim);

// q, out (B, H, T, D) and k, v (B, H_kv, T, D) f32 on the device, any strides with stride 1 in
// D, D <= 128; H a multiple of H_kv (query head h reads key/value head h / (H / H_kv)). lse
// (B, H, T) contiguous receives log sum_j<=i exp(scale q_i . k_j).
// out_i = sum_j<=i softmax_j(scale q_i . k_j) v_j. workspace: f32, contiguous, on the device,
// at least AttentionWorkspaceBytes.
absl::Status CausalAttentionForward(CUstream_st* stream, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                    float scale, const Tensor& workspace);

// dout (B, H, T, D) -> dq (B, H, T, D), dk, dv (B, H_kv, T, D), all overwritten (any strides,
// stride 1 in D); dk and dv sum over the query heads that share them. lse is the forward's (the
// CPU's or this one's); the forward's out is not needed.
absl::Status CausalAttentionBackward(CUstream_st* stream, const Tensor& q, const Tensor& k,
                                     const Tensor& v, const Tensor& lse, const Tensor& dout,
                                     const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                     float scale, const Tensor& workspace);

}  // namespace strata::cuda
