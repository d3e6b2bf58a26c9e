// Causal multi-head self-attention, forward and backward, blocked in the FlashAttention style:
// the backward recomputes scores block by block from q, k and the saved log-sum-exp, so no T x T
// probability matrix is ever kept.
//
//   // q, k, v are views into the packed (B, T, 3, H, D) output of the qkv projection:
//   Tensor qkv5 = qkv.Reshape({B, T, 3, H, D}).value();
//   Tensor q = qkv5.Select(2, 0).value().Permute({0, 2, 1, 3}).value();   // (B, H, T, D)
//   Tensor o = y.Reshape({B, T, H, D}).value().Permute({0, 2, 1, 3}).value();  // writes (B, T, C)
//   std::vector<float> ws(AttentionWorkspaceBytes(B, H, T, D, NumThreads()) / sizeof(float));
//   STRATA_RETURN_IF_ERROR(CausalAttentionForward(q, k, v, o, lse, 1 / sqrt(D), ws));
//   STRATA_RETURN_IF_ERROR(CausalAttentionBackward(q, k, v, lse, dout, dq, dk, dv, scale, ws));
//
// Memory: besides the inputs and outputs, the saved state is lse, B * H * T floats, and the
// workspace is (2 D + 128) * T' floats per thread, T' = T rounded up to an odd multiple of 16: k^T
// and v^T of one head, and one 64-query block of probabilities and of their gradients (2 * 64 * T
// floats per thread where AVX-512 is not available). An unfused implementation keeps
// B * H * T * T floats of probabilities for backward (at B=8, H=6, T=256, D=64: 12 MiB, against
// 48 KiB of lse plus 544 KiB of workspace on 2 threads).
//
// Work is split over (batch, head) pairs; each pair runs query blocks of 64 rows in order. With
// AVX-512 the block products are register-blocked micro-kernels that need no operand packing
// (Note [Attention micro-kernels] in internal/attention_kernels.h); otherwise they are
// single-threaded sgemm calls inside the parallel region.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// Scratch bytes for either direction when up to `num_threads` threads run.
size_t AttentionWorkspaceBytes(int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                               int num_threads);

// q, out (B, H, T, D) and k, v (B, H_kv, T, D) f32, any strides with stride 1 in D; H a multiple
// of H_kv (grouped-query attention: query head h reads key/value head h / (H / H_kv); H_kv = H is
// multi-head attention). lse (B, H, T) contiguous receives log sum_j<=i exp(scale q_i . k_j).
// out_i = sum_j<=i softmax_j(scale q_i . k_j) v_j.
absl::Status CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out, const Tensor& lse, float scale,
                                    absl::Span<float> workspace);

// dout (B, H, T, D) -> dq (B, H, T, D), dk, dv (B, H_kv, T, D), all overwritten (any strides,
// stride 1 in D); dk and dv sum over the query heads that share them.
// lse is the forward's. The forward's out is not needed: the softmax gradient's row term
// dout_i . out_i is computed as sum_j p_ij (dout_i . v_j) from the recomputed block.
absl::Status CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& lse, const Tensor& dout,
                                     const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                     float scale, absl::Span<float> workspace);

}  // namespace strata::cpu
