// Direct 2-D convolution on the device, correctness first (no shared-memory tiling, no GEMM):
// - forward: one thread per output element sums its channels and taps in f32;
// - dx: one thread per input element gathers, as a transposed convolution, every (output
//   channel of its group, tap) whose output position lands on a stride multiple;
// - dw: one block per weight element reduces over the batch and the output positions, each
//   thread over a fixed stride of them and then a tree (BlockSum), so the result does not depend
//   on scheduling and no atomics are used;
// - db: one block per output channel, the same way.
// Grouped and depthwise convolutions are the same kernels: a channel only meets its group.
#include "runtime/cuda/conv2d_kernel.h"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

constexpr int64_t kMaxReduceBlocks = int64_t{1} << 20;

int ReduceBlocks(int64_t count) { return static_cast<int>(std::min(count, kMaxReduceBlocks)); }

__global__ void ForwardKernel(const float* __restrict__ x, const float* __restrict__ w,
                              const float* __restrict__ b, float* __restrict__ y, ConvShape s) {
  const int64_t total = s.n * s.oc * s.oh * s.ow;
  const int64_t cg = s.c / s.groups, ocg = s.oc / s.groups;
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t ox = i % s.ow;
    const int64_t oy = (i / s.ow) % s.oh;
    const int64_t o = (i / (s.ow * s.oh)) % s.oc;
    const int64_t n = i / (s.ow * s.oh * s.oc);
    const int64_t grp = o / ocg;
    const float* x_g = x + (n * s.c + grp * cg) * s.h * s.w;
    const float* w_o = w + o * cg * s.kh * s.kw;
    const int64_t y0 = oy * s.stride_h - s.pad_h, x0 = ox * s.stride_w - s.pad_w;
    float acc = 0.0f;
    for (int64_t ci = 0; ci < cg; ++ci) {
      const float* plane = x_g + ci * s.h * s.w;
      const float* taps = w_o + ci * s.kh * s.kw;
      for (int64_t ky = 0; ky < s.kh; ++ky) {
        const int64_t iy = y0 + ky * s.dilation_h;
        if (iy < 0 || iy >= s.h) continue;
        for (int64_t kx = 0; kx < s.kw; ++kx) {
          const int64_t ix = x0 + kx * s.dilation_w;
          if (ix < 0 || ix >= s.w) continue;
          acc += plane[iy * s.w + ix] * taps[ky * s.kw + kx];
        }
      }
    }
    y[i] = b != nullptr ? acc + b[o] : acc;
  }
}

__global__ void InputGradKernel(const float* __restrict__ w, const float* __restrict__ dy,
                                float* __restrict__ dx, ConvShape s) {
  const int64_t total = s.n * s.c * s.h * s.w;
  const int64_t cg = s.c / s.groups, ocg = s.oc / s.groups;
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t ix = i % s.w;
    const int64_t iy = (i / s.w) % s.h;
    const int64_t ch = (i / (s.w * s.h)) % s.c;
    const int64_t n = i / (s.w * s.h * s.c);
    const int64_t grp = ch / cg, ci = ch % cg;
    float acc = 0.0f;
    for (int64_t ol = 0; ol < ocg; ++ol) {
      const int64_t o = grp * ocg + ol;
      const float* dy_o = dy + (n * s.oc + o) * s.oh * s.ow;
      const float* taps = w + (o * cg + ci) * s.kh * s.kw;
      for (int64_t ky = 0; ky < s.kh; ++ky) {
        // oy * stride_h - pad_h + ky * dilation_h == iy
        const int64_t ty = iy + s.pad_h - ky * s.dilation_h;
        if (ty < 0 || ty % s.stride_h != 0) continue;
        const int64_t oy = ty / s.stride_h;
        if (oy >= s.oh) continue;
        for (int64_t kx = 0; kx < s.kw; ++kx) {
          const int64_t tx = ix + s.pad_w - kx * s.dilation_w;
          if (tx < 0 || tx % s.stride_w != 0) continue;
          const int64_t ox = tx / s.stride_w;
          if (ox >= s.ow) continue;
          acc += dy_o[oy * s.ow + ox] * taps[ky * s.kw + kx];
        }
      }
    }
    dx[i] = acc;
  }
}

// One block per weight element (o, ci, ky, kx), grid-stride over them.
__global__ void WeightGradKernel(const float* __restrict__ x, const float* __restrict__ dy,
                                 float* __restrict__ dw, bool accumulate, ConvShape s) {
  __shared__ float shared[kWarp];
  const int64_t cg = s.c / s.groups, ocg = s.oc / s.groups;
  const int64_t elements = s.oc * cg * s.kh * s.kw;
  const int64_t positions = s.oh * s.ow;
  const int64_t count = s.n * positions;
  for (int64_t e = blockIdx.x; e < elements; e += gridDim.x) {
    const int64_t kx = e % s.kw;
    const int64_t ky = (e / s.kw) % s.kh;
    const int64_t ci = (e / (s.kw * s.kh)) % cg;
    const int64_t o = e / (s.kw * s.kh * cg);
    const int64_t ch = (o / ocg) * cg + ci;
    float acc = 0.0f;
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
      const int64_t n = j / positions, p = j % positions;
      const int64_t oy = p / s.ow, ox = p % s.ow;
      const int64_t iy = oy * s.stride_h - s.pad_h + ky * s.dilation_h;
      const int64_t ix = ox * s.stride_w - s.pad_w + kx * s.dilation_w;
      if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
      acc += dy[(n * s.oc + o) * positions + p] * x[((n * s.c + ch) * s.h + iy) * s.w + ix];
    }
    acc = BlockSum(acc, shared);
    if (threadIdx.x == 0) dw[e] = accumulate ? dw[e] + acc : acc;
  }
}

// One block per output channel, grid-stride over them.
__global__ void BiasGradKernel(const float* __restrict__ dy, float* __restrict__ db, int64_t n,
                               int64_t oc, int64_t hw, bool accumulate) {
  __shared__ float shared[kWarp];
  const int64_t count = n * hw;
  for (int64_t o = blockIdx.x; o < oc; o += gridDim.x) {
    float acc = 0.0f;
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
      acc += dy[((j / hw) * oc + o) * hw + j % hw];
    }
    acc = BlockSum(acc, shared);
    if (threadIdx.x == 0) db[o] = accumulate ? db[o] + acc : acc;
  }
}

}  // namespace

int LaunchConv2dForward(const float* x, const float* w, const float* b, float* y,
                        const ConvShape& s, CUstream_st* stream) {
  const int64_t total = s.n * s.oc * s.oh * s.ow;
  if (total == 0) return static_cast<int>(cudaSuccess);
  ForwardKernel<<<BlocksFor(total), kThreads, 0, stream>>>(x, w, b, y, s);
  return static_cast<int>(cudaGetLastError());
}

int LaunchConv2dInputGrad(const float* w, const float* dy, float* dx, const ConvShape& s,
                          CUstream_st* stream) {
  const int64_t total = s.n * s.c * s.h * s.w;
  if (total == 0) return static_cast<int>(cudaSuccess);
  InputGradKernel<<<BlocksFor(total), kThreads, 0, stream>>>(w, dy, dx, s);
  return static_cast<int>(cudaGetLastError());
}

int LaunchConv2dWeightGrad(const float* x, const float* dy, float* dw, bool accumulate,
                           const ConvShape& s, CUstream_st* stream) {
  const int64_t elements = s.oc * (s.c / s.groups) * s.kh * s.kw;
  if (elements == 0) return static_cast<int>(cudaSuccess);
  WeightGradKernel<<<ReduceBlocks(elements), kThreads, 0, stream>>>(x, dy, dw, accumulate, s);
  return static_cast<int>(cudaGetLastError());
}

int LaunchConv2dBiasGrad(const float* dy, float* db, int64_t n, int64_t oc, int64_t hw,
                         bool accumulate, CUstream_st* stream) {
  if (oc == 0) return static_cast<int>(cudaSuccess);
  BiasGradKernel<<<ReduceBlocks(oc), kThreads, 0, stream>>>(dy, db, n, oc, hw, accumulate);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
