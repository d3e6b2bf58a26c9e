// Pooling on the device with the CPU kernel's arithmetic in the CPU kernel's order, so that max
// and average pooling (both directions) and the global backward are bit for bit the CPU's:
// - forward: one thread per output, its window visited row by row as on the CPU;
// - backward: one thread per input element gathers the outputs whose windows hold it, in the
//   output order in which the CPU scatters them, so no atomics and the same sums;
// - the global average's forward: one block per plane (a tree sum; last bits may differ).
#include "runtime/cuda/kernel_util.cuh"
#include "runtime/cuda/pooling_kernel.h"

namespace strata::cuda::internal {
namespace {

struct Window {
  int64_t y0, y1, x0, x1;
};

__device__ __forceinline__ Window WindowAt(const PoolShape& s, int64_t oy, int64_t ox) {
  const int64_t ty = oy * s.stride_h - s.pad_h, tx = ox * s.stride_w - s.pad_w;
  return {ty > 0 ? ty : 0, ty + s.kernel_h < s.h ? ty + s.kernel_h : s.h, tx > 0 ? tx : 0,
          tx + s.kernel_w < s.w ? tx + s.kernel_w : s.w};
}

// As the CPU's WindowArgmax: the first maximum wins, a NaN wins at once.
__device__ __forceinline__ int64_t WindowArgmax(const float* in, int64_t width, const Window& win) {
  int64_t arg = win.y0 * width + win.x0;
  float best = in[arg];
  for (int64_t iy = win.y0; iy < win.y1; ++iy) {
    for (int64_t ix = win.x0; ix < win.x1; ++ix) {
      const float v = in[iy * width + ix];
      if (isnan(v)) return iy * width + ix;
      if (v > best) {
        arg = iy * width + ix;
        best = v;
      }
    }
  }
  return arg;
}

// The outputs [first, last] along one axis whose windows hold input index i.
__device__ __forceinline__ void OutputRange(int64_t i, int pad, int kernel, int stride,
                                            int64_t out, int64_t* first, int64_t* last) {
  const int64_t t = i + pad;  // o * stride <= t < o * stride + kernel
  const int64_t lo = t - kernel + 1;
  *first = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  const int64_t hi = t / stride;
  *last = hi < out - 1 ? hi : out - 1;
}

__global__ void MaxForwardKernel(const float* __restrict__ x, float* __restrict__ y, PoolShape s) {
  const int64_t total = s.planes * s.oh * s.ow;
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t ox = i % s.ow, oy = (i / s.ow) % s.oh, pl = i / (s.ow * s.oh);
    const float* in = x + pl * s.h * s.w;
    y[i] = in[WindowArgmax(in, s.w, WindowAt(s, oy, ox))];
  }
}

__global__ void MaxBackwardKernel(const float* __restrict__ x, const float* __restrict__ dy,
                                  float* __restrict__ dx, PoolShape s) {
  const int64_t total = s.planes * s.h * s.w;
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t ix = i % s.w, iy = (i / s.w) % s.h, pl = i / (s.w * s.h);
    const float* in = x + pl * s.h * s.w;
    const float* d = dy + pl * s.oh * s.ow;
    const int64_t self = iy * s.w + ix;
    int64_t oy0, oy1, ox0, ox1;
    OutputRange(iy, s.pad_h, s.kernel_h, s.stride_h, s.oh, &oy0, &oy1);
    OutputRange(ix, s.pad_w, s.kernel_w, s.stride_w, s.ow, &ox0, &ox1);
    float acc = 0.0f;
    for (int64_t oy = oy0; oy <= oy1; ++oy) {
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        if (WindowArgmax(in, s.w, WindowAt(s, oy, ox)) == self) acc += d[oy * s.ow + ox];
      }
    }
    dx[i] = acc;
  }
}

__global__ void AvgForwardKernel(const float* __restrict__ x, float* __restrict__ y, PoolShape s) {
  const int64_t total = s.planes * s.oh * s.ow;
  const float inv = 1.0f / static_cast<float>(s.kernel_h * s.kernel_w);
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t ox = i % s.ow, oy = (i / s.ow) % s.oh, pl = i / (s.ow * s.oh);
    const float* in = x + pl * s.h * s.w;
    const Window win = WindowAt(s, oy, ox);
    float sum = 0.0f;
    for (int64_t iy = win.y0; iy < win.y1; ++iy) {
      for (int64_t ix = win.x0; ix < win.x1; ++ix) sum += in[iy * s.w + ix];
    }
    y[i] = sum * inv;
  }
}

__global__ void AvgBackwardKernel(const float* __restrict__ dy, float* __restrict__ dx,
                                  PoolShape s) {
  const int64_t total = s.planes * s.h * s.w;
  const float inv = 1.0f / static_cast<float>(s.kernel_h * s.kernel_w);
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) {
    const int64_t ix = i % s.w, iy = (i / s.w) % s.h, pl = i / (s.w * s.h);
    const float* d = dy + pl * s.oh * s.ow;
    int64_t oy0, oy1, ox0, ox1;
    OutputRange(iy, s.pad_h, s.kernel_h, s.stride_h, s.oh, &oy0, &oy1);
    OutputRange(ix, s.pad_w, s.kernel_w, s.stride_w, s.ow, &ox0, &ox1);
    float acc = 0.0f;
    for (int64_t oy = oy0; oy <= oy1; ++oy) {
      // d * inv rounded first, as the CPU's (never fused into the add).
      for (int64_t ox = ox0; ox <= ox1; ++ox) acc += __fmul_rn(d[oy * s.ow + ox], inv);
    }
    dx[i] = acc;
  }
}

// One block per plane (grid-stride over the planes).
__global__ void GlobalForwardKernel(const float* __restrict__ x, float* __restrict__ y,
                                    int64_t planes, int64_t hw) {
  __shared__ float shared[kWarp];
  for (int64_t pl = blockIdx.x; pl < planes; pl += gridDim.x) {
    const float* in = x + pl * hw;
    float s = 0.0f;
    for (int64_t k = threadIdx.x; k < hw; k += blockDim.x) s += in[k];
    s = BlockSum(s, shared);
    if (threadIdx.x == 0) y[pl] = s / static_cast<float>(hw);
  }
}

__global__ void GlobalBackwardKernel(const float* __restrict__ dy, float* __restrict__ dx,
                                     int64_t planes, int64_t hw) {
  const float inv = 1.0f / static_cast<float>(hw);
  const int64_t total = planes * hw;
  for (int64_t i = GlobalIndex(); i < total; i += GridStride()) dx[i] = dy[i / hw] * inv;
}

constexpr int64_t kMaxBlocks = 65535;

}  // namespace

int LaunchMaxPool2dForward(const float* x, float* y, const PoolShape& s, CUstream_st* stream) {
  const int64_t n = s.planes * s.oh * s.ow;
  if (n == 0) return static_cast<int>(cudaSuccess);
  MaxForwardKernel<<<BlocksFor(n), kThreads, 0, stream>>>(x, y, s);
  return static_cast<int>(cudaGetLastError());
}

int LaunchMaxPool2dBackward(const float* x, const float* dy, float* dx, const PoolShape& s,
                            CUstream_st* stream) {
  const int64_t n = s.planes * s.h * s.w;
  if (n == 0) return static_cast<int>(cudaSuccess);
  MaxBackwardKernel<<<BlocksFor(n), kThreads, 0, stream>>>(x, dy, dx, s);
  return static_cast<int>(cudaGetLastError());
}

int LaunchAvgPool2dForward(const float* x, float* y, const PoolShape& s, CUstream_st* stream) {
  const int64_t n = s.planes * s.oh * s.ow;
  if (n == 0) return static_cast<int>(cudaSuccess);
  AvgForwardKernel<<<BlocksFor(n), kThreads, 0, stream>>>(x, y, s);
  return static_cast<int>(cudaGetLastError());
}

int LaunchAvgPool2dBackward(const float* dy, float* dx, const PoolShape& s, CUstream_st* stream) {
  const int64_t n = s.planes * s.h * s.w;
  if (n == 0) return static_cast<int>(cudaSuccess);
  AvgBackwardKernel<<<BlocksFor(n), kThreads, 0, stream>>>(dy, dx, s);
  return static_cast<int>(cudaGetLastError());
}

int LaunchGlobalAvgPoolForward(const float* x, float* y, int64_t planes, int64_t hw,
                               CUstream_st* stream) {
  if (planes == 0) return static_cast<int>(cudaSuccess);
  const int blocks = static_cast<int>(std::min(planes, kMaxBlocks));
  GlobalForwardKernel<<<blocks, kThreads, 0, stream>>>(x, y, planes, hw);
  return static_cast<int>(cudaGetLastError());
}

int LaunchGlobalAvgPoolBackward(const float* dy, float* dx, int64_t planes, int64_t hw,
                                CUstream_st* stream) {
  const int64_t n = planes * hw;
  if (n == 0) return static_cast<int>(cudaSuccess);
  GlobalBackwardKernel<<<BlocksFor(n), kThreads, 0, stream>>>(dy, dx, planes, hw);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
