// Causal attention in the FlashAttention-2 style, in f32 without tensor cores.
//
// Note [CUDA attention tiles]
// Every kernel runs kAttnThreads = 256 threads: 8 warps, and a tile of 8 query rows (one per warp)
// against tiles of 32 keys (one per lane). A lane computes its key's score for its warp's row as a
// dot product over the head dimension, from shared-memory tiles: the query row is read by all
// lanes at once (a broadcast), and key rows are padded to kMaxD + 1 floats so that the 32 lanes
// reading 32 different key rows at the same column hit 32 different banks. Head dimensions up to
// kMaxD (32, 64 or 128) run in the kernel for kMaxD, zero-padded: the padding adds exact zeros.
// At kMaxD = 128 the largest kernel holds 43 KiB of static shared memory (under the 48 KiB limit).
//
// Forward: one block per (batch, query head, 8 rows); it walks the key tiles up to the causal
// limit, keeping per row the running maximum m and sum l of the online softmax and the lane's
// kMaxD / 32 columns of the unnormalised output; it writes out = acc / l and lse = m + log l.
//
// Backward, two launches, deterministic (no atomics):
// - DqKernel, one block per (batch, query head, 8 rows): a first walk over the key tiles
//   recomputes p = exp(scale q.k - lse) and dp = dout.v and sums D_i = sum_j p_ij dp_ij (which is
//   dout_i . out_i; the forward's out is not an argument, as on the CPU), stored for the next
//   kernel; a second walk forms ds = p (dp - D_i) scale and dq_i = sum_j ds_ij k_j.
// - DkDvKernel, one block per (batch, key/value head, 32 keys): k and v stay in shared memory while
//   it walks every query head of the group and the query rows from its first key on, 8 at a time:
//   each warp writes its row's p and ds into shared memory, then every thread adds its 16 (at
//   kMaxD = 128) elements of dv += p^T dout and dk += ds^T q, in registers, in a fixed order.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <type_traits>

#include "runtime/cuda/attention_kernel.h"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

constexpr int kRows = 8;                     // query rows per tile: one per warp
constexpr int kKeys = kWarp;                 // keys per tile: one per lane
constexpr int kAttnThreads = kRows * kWarp;  // 256
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ int64_t Min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Row 0 of head h of batch b.
__device__ __forceinline__ const float* HeadRows(const BhtdView& m, int64_t b, int64_t h) {
  return m.data + b * m.batch_stride + h * m.head_stride;
}
__device__ __forceinline__ float* MutableHeadRows(const BhtdView& m, int64_t b, int64_t h) {
  return m.data + b * m.batch_stride + h * m.head_stride;
}

// Rows [t0, t0 + rows) of one head (row 0 at `head`) into the shared tile (rows, ld), columns
// [0, kMaxD): zero past the T rows and past the D columns. Every thread of the block calls it.
template <int kMaxD>
__device__ __forceinline__ void LoadTile(const float* __restrict__ head, int64_t row_stride,
                                         int64_t t0, int rows, int64_t T, int64_t D,
                                         float* __restrict__ tile, int ld) {
  for (int e = threadIdx.x; e < rows * kMaxD; e += blockDim.x) {
    const int r = e / kMaxD, d = e % kMaxD;
    const int64_t t = t0 + r;
    tile[r * ld + d] = (t < T && d < D) ? head[t * row_stride + d] : 0.0f;
  }
}

template <int kMaxD>
__device__ __forceinline__ float Dot(const float* a, const float* b) {
  float s = 0.0f;
#pragma unroll 16
  for (int d = 0; d < kMaxD; ++d) s = fmaf(a[d], b[d], s);
  return s;
}

template <int kMaxD>
__global__ void __launch_bounds__(kAttnThreads)
    ForwardKernel(AttentionShape shape, BhtdView q, BhtdView k, BhtdView v, BhtdView out,
                  float* __restrict__ lse, float scale) {
  constexpr int kPer = kMaxD / kWarp;  // output columns per lane: lane + 32 c
  constexpr int kLd = kMaxD + 1;       // padded key rows
  __shared__ float qs[kRows * kMaxD];
  __shared__ float ks[kKeys * kLd];
  __shared__ float vs[kKeys * kMaxD];
  const int64_t T = shape.seq, D = shape.head_dim;
  const int64_t tiles = (T + kRows - 1) / kRows;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * kRows;
  const int64_t b = bh / shape.heads, h = bh % shape.heads;
  const int64_t kh = h / (shape.heads / shape.kv_heads);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t i = i0 + warp;  // this warp's query row
  const bool live = i < T;      // warp-uniform
  const float* krows = HeadRows(k, b, kh);
  const float* vrows = HeadRows(v, b, kh);
  LoadTile<kMaxD>(HeadRows(q, b, h), q.row_stride, i0, kRows, T, D, qs, kMaxD);
  float m = -INFINITY, l = 0.0f, acc[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = 0.0f;
  const int64_t keys = Min64(T, i0 + kRows);  // keys the block's last row sees
  for (int64_t j0 = 0; j0 < keys; j0 += kKeys) {
    __syncthreads();  // the last tile's readers are done
    LoadTile<kMaxD>(krows, k.row_stride, j0, kKeys, T, D, ks, kLd);
    LoadTile<kMaxD>(vrows, v.row_stride, j0, kKeys, T, D, vs, kMaxD);
    __syncthreads();
    if (live) {
      const int64_t j = j0 + lane;
      const float s = j <= i ? scale * Dot<kMaxD>(qs + warp * kMaxD, ks + lane * kLd) : -INFINITY;
      const float m_new = fmaxf(m, WarpMax(s));
      // Key 0 is visible to every row, so m_new is finite from the first tile on; the guard
      // keeps exp(-inf - -inf) out regardless.
      const float shift = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = expf(m - shift);
      const float p = expf(s - shift);  // 0 for masked keys
      l = l * alpha + WarpSum(p);
      m = m_new;
#pragma unroll
      for (int c = 0; c < kPer; ++c) acc[c] *= alpha;
      const int n = static_cast<int>(Min64(kKeys, i - j0 + 1));  // visible keys here
      for (int jj = 0; jj < n; ++jj) {
        const float pj = __shfl_sync(kFullMask, p, jj);
#pragma unroll
        for (int c = 0; c < kPer; ++c) acc[c] = fmaf(pj, vs[jj * kMaxD + c * kWarp + lane], acc[c]);
      }
    }
  }
  if (live) {
    float* o = MutableHeadRows(out, b, h) + i * out.row_stride;
    const float inv = 1.0f / l;
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int d = c * kWarp + lane;
      if (d < D) o[d] = acc[c] * inv;
    }
    if (lane == 0) lse[bh * T + i] = m + logf(l);
  }
}

template <int kMaxD>
__global__ void __launch_bounds__(kAttnThreads)
    DqKernel(AttentionShape shape, BhtdView q, BhtdView k, BhtdView v,
             const float* __restrict__ lse, BhtdView dout, BhtdView dq,
             float* __restrict__ row_dot, float scale) {
  constexpr int kPer = kMaxD / kWarp;
  constexpr int kLd = kMaxD + 1;
  __shared__ float qs[kRows * kMaxD];
  __shared__ float dos[kRows * kMaxD];
  __shared__ float ks[kKeys * kLd];
  __shared__ float vs[kKeys * kLd];
  const int64_t T = shape.seq, D = shape.head_dim;
  const int64_t tiles = (T + kRows - 1) / kRows;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * kRows;
  const int64_t b = bh / shape.heads, h = bh % shape.heads;
  const int64_t kh = h / (shape.heads / shape.kv_heads);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t i = i0 + warp;
  const bool live = i < T;  // warp-uniform
  const float* krows = HeadRows(k, b, kh);
  const float* vrows = HeadRows(v, b, kh);
  LoadTile<kMaxD>(HeadRows(q, b, h), q.row_stride, i0, kRows, T, D, qs, kMaxD);
  LoadTile<kMaxD>(HeadRows(dout, b, h), dout.row_stride, i0, kRows, T, D, dos, kMaxD);
  const float row_lse = live ? lse[bh * T + i] : 0.0f;
  const float* qrow = qs + warp * kMaxD;
  const float* dorow = dos + warp * kMaxD;
  const int64_t keys = Min64(T, i0 + kRows);

  // Pass 1: D_i = sum_j p_ij dp_ij, each lane over its keys, then across the warp.
  float dot = 0.0f;
  for (int64_t j0 = 0; j0 < keys; j0 += kKeys) {
    __syncthreads();
    LoadTile<kMaxD>(krows, k.row_stride, j0, kKeys, T, D, ks, kLd);
    LoadTile<kMaxD>(vrows, v.row_stride, j0, kKeys, T, D, vs, kLd);
    __syncthreads();
    if (live && j0 + lane <= i) {
      const float p = expf(scale * Dot<kMaxD>(qrow, ks + lane * kLd) - row_lse);
      const float dp = Dot<kMaxD>(dorow, vs + lane * kLd);
      dot = fmaf(p, dp, dot);
    }
  }
  const float di = WarpSum(dot);
  if (live && lane == 0) row_dot[bh * T + i] = di;

  // Pass 2: dq_i = sum_j p_ij (dp_ij - D_i) scale k_j.
  float acc[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = 0.0f;
  for (int64_t j0 = 0; j0 < keys; j0 += kKeys) {
    __syncthreads();
    LoadTile<kMaxD>(krows, k.row_stride, j0, kKeys, T, D, ks, kLd);
    LoadTile<kMaxD>(vrows, v.row_stride, j0, kKeys, T, D, vs, kLd);
    __syncthreads();
    if (live) {
      float ds = 0.0f;
      if (j0 + lane <= i) {
        const float p = expf(scale * Dot<kMaxD>(qrow, ks + lane * kLd) - row_lse);
        const float dp = Dot<kMaxD>(dorow, vs + lane * kLd);
        ds = p * (dp - di) * scale;
      }
      const int n = static_cast<int>(Min64(kKeys, i - j0 + 1));
      for (int jj = 0; jj < n; ++jj) {
        const float dsj = __shfl_sync(kFullMask, ds, jj);
#pragma unroll
        for (int c = 0; c < kPer; ++c) acc[c] = fmaf(dsj, ks[jj * kLd + c * kWarp + lane], acc[c]);
      }
    }
  }
  if (live) {
    float* g = MutableHeadRows(dq, b, h) + i * dq.row_stride;
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int d = c * kWarp + lane;
      if (d < D) g[d] = acc[c];
    }
  }
}

template <int kMaxD>
__global__ void __launch_bounds__(kAttnThreads)
    DkDvKernel(AttentionShape shape, BhtdView q, BhtdView k, BhtdView v,
               const float* __restrict__ lse, BhtdView dout, BhtdView dk, BhtdView dv,
               const float* __restrict__ row_dot, float scale) {
  constexpr int kLd = kMaxD + 1;
  constexpr int kPerThread = kKeys * kMaxD / kAttnThreads;  // (key, column) pairs per thread
  static_assert(kMaxD % kWarp == 0 && kPerThread * kAttnThreads == kKeys * kMaxD);
  __shared__ float ks[kKeys * kLd];
  __shared__ float vs[kKeys * kLd];
  __shared__ float qs[kRows * kMaxD];
  __shared__ float dos[kRows * kMaxD];
  __shared__ float ps[kRows * kKeys];
  __shared__ float dss[kRows * kKeys];
  const int64_t T = shape.seq, D = shape.head_dim, H = shape.heads;
  const int64_t G = H / shape.kv_heads;
  const int64_t tiles = (T + kKeys - 1) / kKeys;
  const int64_t bkh = blockIdx.x / tiles, j0 = (blockIdx.x % tiles) * kKeys;
  const int64_t b = bkh / shape.kv_heads, kh = bkh % shape.kv_heads;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t j = j0 + lane;  // this lane's key when scoring
  LoadTile<kMaxD>(HeadRows(k, b, kh), k.row_stride, j0, kKeys, T, D, ks, kLd);
  LoadTile<kMaxD>(HeadRows(v, b, kh), v.row_stride, j0, kKeys, T, D, vs, kLd);
  float dk_acc[kPerThread], dv_acc[kPerThread];
#pragma unroll
  for (int e = 0; e < kPerThread; ++e) dk_acc[e] = dv_acc[e] = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = kh * G + g, bh = b * H + h;
    const float* qrows = HeadRows(q, b, h);
    const float* dorows = HeadRows(dout, b, h);
    // Rows before j0 see none of these keys.
    for (int64_t i0 = j0; i0 < T; i0 += kRows) {
      __syncthreads();  // the last rows' products are done (the first time: nothing to wait for)
      LoadTile<kMaxD>(qrows, q.row_stride, i0, kRows, T, D, qs, kMaxD);
      LoadTile<kMaxD>(dorows, dout.row_stride, i0, kRows, T, D, dos, kMaxD);
      __syncthreads();  // also makes ks and vs visible the first time
      const int64_t i = i0 + warp;
      float p = 0.0f, ds = 0.0f;
      if (i < T && j <= i) {
        p = expf(scale * Dot<kMaxD>(qs + warp * kMaxD, ks + lane * kLd) - lse[bh * T + i]);
        const float dp = Dot<kMaxD>(dos + warp * kMaxD, vs + lane * kLd);
        ds = p * (dp - row_dot[bh * T + i]) * scale;
      }
      ps[warp * kKeys + lane] = p;
      dss[warp * kKeys + lane] = ds;
      __syncthreads();
#pragma unroll
      for (int e = 0; e < kPerThread; ++e) {
        const int idx = threadIdx.x + e * kAttnThreads;
        const int key = idx / kMaxD, d = idx % kMaxD;  // key is warp-uniform: a broadcast
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          dv_acc[e] = fmaf(ps[r * kKeys + key], dos[r * kMaxD + d], dv_acc[e]);
          dk_acc[e] = fmaf(dss[r * kKeys + key], qs[r * kMaxD + d], dk_acc[e]);
        }
      }
    }
  }
  float* dkrows = MutableHeadRows(dk, b, kh);
  float* dvrows = MutableHeadRows(dv, b, kh);
#pragma unroll
  for (int e = 0; e < kPerThread; ++e) {
    const int idx = threadIdx.x + e * kAttnThreads;
    const int key = idx / kMaxD, d = idx % kMaxD;
    if (j0 + key < T && d < D) {
      dkrows[(j0 + key) * dk.row_stride + d] = dk_acc[e];
      dvrows[(j0 + key) * dv.row_stride + d] = dv_acc[e];
    }
  }
}

// Calls fn(std::integral_constant<int, kMaxD>) for the smallest of 32, 64, 128 that holds D.
template <typename Fn>
int ForHeadDim(int64_t head_dim, Fn fn) {
  if (head_dim <= 32) return fn(std::integral_constant<int, 32>());
  if (head_dim <= 64) return fn(std::integral_constant<int, 64>());
  if (head_dim <= 128) return fn(std::integral_constant<int, 128>());
  return static_cast<int>(cudaErrorInvalidValue);  // the launcher refuses these first
}

// Blocks for units * ceil(T / tile) as a grid size, or 0 where it does not fit one.
unsigned GridFor(int64_t units, int64_t seq, int64_t tile) {
  const int64_t blocks = units * ((seq + tile - 1) / tile);
  return blocks > INT_MAX ? 0u : static_cast<unsigned>(blocks);
}

}  // namespace

static_assert(kAttentionMaxHeadDim == 128, "ForHeadDim's largest kernel");

int LaunchCausalAttentionForward(const AttentionShape& shape, BhtdView q, BhtdView k, BhtdView v,
                                 BhtdView out, float* lse, float scale, CUstream_st* stream) {
  if (shape.batch * shape.heads * shape.seq == 0) return static_cast<int>(cudaSuccess);
  const unsigned blocks = GridFor(shape.batch * shape.heads, shape.seq, kRows);
  if (blocks == 0) return static_cast<int>(cudaErrorInvalidConfiguration);
  return ForHeadDim(shape.head_dim, [&](auto max_d) {
    ForwardKernel<decltype(max_d)::value>
        <<<blocks, kAttnThreads, 0, stream>>>(shape, q, k, v, out, lse, scale);
    return static_cast<int>(cudaGetLastError());
  });
}

int LaunchCausalAttentionBackward(const AttentionShape& shape, BhtdView q, BhtdView k, BhtdView v,
                                  const float* lse, BhtdView dout, BhtdView dq, BhtdView dk,
                                  BhtdView dv, float* row_dot, float scale, CUstream_st* stream) {
  if (shape.batch * shape.heads * shape.seq == 0) return static_cast<int>(cudaSuccess);
  const unsigned dq_blocks = GridFor(shape.batch * shape.heads, shape.seq, kRows);
  const unsigned dkv_blocks = GridFor(shape.batch * shape.kv_heads, shape.seq, kKeys);
  if (dq_blocks == 0 || dkv_blocks == 0) return static_cast<int>(cudaErrorInvalidConfiguration);
  return ForHeadDim(shape.head_dim, [&](auto max_d) {
    constexpr int kMaxD = decltype(max_d)::value;
    DqKernel<kMaxD><<<dq_blocks, kAttnThreads, 0, stream>>>(shape, q, k, v, lse, dout, dq,
                                                            row_dot, scale);
    const cudaError_t first = cudaGetLastError();
    if (first != cudaSuccess) return static_cast<int>(first);
    DkDvKernel<kMaxD><<<dkv_blocks, kAttnThreads, 0, stream>>>(shape, q, k, v, lse, dout, dk,
                                                               dv, row_dot, scale);
    return static_cast<int>(cudaGetLastError());
  });
}

}  // namespace strata::cuda::internal
