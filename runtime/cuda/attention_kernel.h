// CausalAttentionForward/Backward's kernels (attention_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// The largest head dimension the kernels take (tiles of K and V sit in shared memory).
constexpr int64_t kAttentionMaxHeadDim = 128;

// A (B, heads, T, D) f32 tensor on the device with stride 1 in D: element (b, h, t, d) is
// data[b * batch_stride + h * head_stride + t * row_stride + d].
struct BhtdView {
  float* data;
  int64_t batch_stride, head_stride, row_stride;
};

// q, out, dout, dq have `heads` heads; k, v, dk, dv have `kv_heads`, a divisor of heads (query
// head h reads key/value head h / (heads / kv_heads)). head_dim <= kAttentionMaxHeadDim.
struct AttentionShape {
  int64_t batch, heads, kv_heads, seq, head_dim;
};

// out and lse (B, heads, T contiguous) of causal softmax(scale q k^T) v, on `stream`; returns the
// launch's cudaError_t.
int LaunchCausalAttentionForward(const AttentionShape& shape, BhtdView q, BhtdView k, BhtdView v,
                                 BhtdView out, float* lse, float scale, CUstream_st* stream);

// dq, dk, dv (overwritten) from the forward's lse; row_dot (B * heads * T floats of scratch)
// receives D_i = dout_i . out_i. Two launches: dq (and D), then dk and dv.
int LaunchCausalAttentionBackward(const AttentionShape& shape, BhtdView q, BhtdView k, BhtdView v,
                                  const float* lse, BhtdView dout, BhtdView dq, BhtdView dk,
                                  BhtdView dv, float* row_dot, float scale, CUstream_st* stream);

}  // namespace strata::cuda::internal
