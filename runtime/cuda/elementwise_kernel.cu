// Elementwise arithmetic on the device, with the CPU kernels' formulas (cpu/elementwise.cc).
// Sums, products, quotients and square roots are each rounded on their own (__fadd_rn, __fmul_rn,
// __fdiv_rn, __fsqrt_rn: nvcc may not fuse or approximate them), so Add, Sub, Mul, Div, Scale,
// Pow(x, 2), Sqrt and Rsqrt are the CPU's bit for bit. a + alpha b and alpha x + beta are one
// fused multiply-add, as GCC contracts them on the CPU when it targets a machine with FMA (the
// default -march=native build); a CPU build without FMA rounds the product first and differs in
// the last bit. exp, log and pow are the device's expf, logf and powf, which may differ from
// glibc's in the last bit.
#include <cuda_runtime.h>

#include "runtime/cuda/elementwise_kernel.h"
#include "runtime/cuda/elementwise_map.cuh"
#include "runtime/cuda/kernel_util.cuh"

namespace strata::cuda::internal {
namespace {

struct AddOp {
  __device__ float operator()(float a, float b) const { return __fadd_rn(a, b); }
};
struct AddScaledOp {
  float alpha;
  __device__ float operator()(float a, float b) const { return __fmaf_rn(alpha, b, a); }
};
struct MulOp {
  __device__ float operator()(float a, float b) const { return __fmul_rn(a, b); }
};
struct SubOp {
  __device__ float operator()(float a, float b) const { return __fsub_rn(a, b); }
};
struct DivOp {
  __device__ float operator()(float a, float b) const { return __fdiv_rn(a, b); }
};
struct ScaleOp {
  float alpha;
  __device__ float operator()(float x) const { return __fmul_rn(alpha, x); }
};
struct ScaleShiftOp {
  float alpha, beta;
  __device__ float operator()(float x) const { return __fmaf_rn(alpha, x, beta); }
};
struct SquareOp {
  __device__ float operator()(float x) const { return __fmul_rn(x, x); }
};
struct PowOp {
  float exponent;
  __device__ float operator()(float x) const { return powf(x, exponent); }
};
struct ExpOp {
  __device__ float operator()(float x) const { return expf(x); }
};
struct LogOp {
  __device__ float operator()(float x) const { return logf(x); }
};
struct SqrtOp {
  __device__ float operator()(float x) const { return __fsqrt_rn(x); }
};
struct RsqrtOp {
  __device__ float operator()(float x) const { return __fdiv_rn(1.0f, __fsqrt_rn(x)); }
};

template <typename T>
__global__ void AddBiasKernel(const T* __restrict__ x, const T* __restrict__ bias, T* out,
                              int64_t n, int64_t cols) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    StoreF32(out, i, __fadd_rn(LoadF32(x, i), LoadF32(bias, i % cols)));
  }
}

template <typename T>
__global__ void BroadcastRowsKernel(const T* __restrict__ x, T* __restrict__ out, int64_t n,
                                    int64_t cols) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) out[i] = x[i % cols];
}

// Column sums: a block of kBiasCols x kBiasRowLanes threads owns kBiasCols neighbouring columns
// (reads of a row are coalesced); lane y of a column sums rows y, y + kBiasRowLanes, ... and the
// lanes' partial sums are added in lane order, so the result depends on rows and cols only.
constexpr int kBiasCols = 32;
constexpr int kBiasRowLanes = 8;

template <typename T>
__global__ void BiasGradKernel(const T* __restrict__ dout, T* dbias, int64_t rows, int64_t cols,
                               bool accumulate) {
  __shared__ float partial[kBiasRowLanes][kBiasCols];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBiasCols + threadIdx.x;
  float acc = 0.0f;
  if (c < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += kBiasRowLanes) acc += LoadF32(dout, r * cols + c);
  }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.0f;
    for (int y = 0; y < kBiasRowLanes; ++y) total += partial[y][threadIdx.x];
    StoreF32(dbias, c, accumulate ? __fadd_rn(LoadF32(dbias, c), total) : total);
  }
}

}  // namespace

int LaunchElementwise(ElementwiseOp op, ElemType type, const StridedView* in, StridedView out,
                      int64_t n, float alpha, float beta, CUstream_st* stream) {
  switch (op) {
    case ElementwiseOp::kAdd: return LaunchMap<2>(type, in, out, n, AddOp{}, stream);
    case ElementwiseOp::kAddScaled:
      return LaunchMap<2>(type, in, out, n, AddScaledOp{alpha}, stream);
    case ElementwiseOp::kMul: return LaunchMap<2>(type, in, out, n, MulOp{}, stream);
    case ElementwiseOp::kSub: return LaunchMap<2>(type, in, out, n, SubOp{}, stream);
    case ElementwiseOp::kDiv: return LaunchMap<2>(type, in, out, n, DivOp{}, stream);
    case ElementwiseOp::kScale: return LaunchMap<1>(type, in, out, n, ScaleOp{alpha}, stream);
    case ElementwiseOp::kScaleShift:
      return LaunchMap<1>(type, in, out, n, ScaleShiftOp{alpha, beta}, stream);
    case ElementwiseOp::kSquare: return LaunchMap<1>(type, in, out, n, SquareOp{}, stream);
    case ElementwiseOp::kPow: return LaunchMap<1>(type, in, out, n, PowOp{alpha}, stream);
    case ElementwiseOp::kExp: return LaunchMap<1>(type, in, out, n, ExpOp{}, stream);
    case ElementwiseOp::kLog: return LaunchMap<1>(type, in, out, n, LogOp{}, stream);
    case ElementwiseOp::kSqrt: return LaunchMap<1>(type, in, out, n, SqrtOp{}, stream);
    case ElementwiseOp::kRsqrt: return LaunchMap<1>(type, in, out, n, RsqrtOp{}, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int LaunchAddBias(ElemType type, const void* x, const void* bias, void* out, int64_t rows,
                  int64_t cols, CUstream_st* stream) {
  const int64_t n = rows * cols;
  if (n == 0) return static_cast<int>(cudaSuccess);
  if (type == ElemType::kF32) {
    AddBiasKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(
        static_cast<const float*>(x), static_cast<const float*>(bias), static_cast<float*>(out),
        n, cols);
  } else {
    AddBiasKernel<uint16_t><<<BlocksFor(n), kThreads, 0, stream>>>(
        static_cast<const uint16_t*>(x), static_cast<const uint16_t*>(bias),
        static_cast<uint16_t*>(out), n, cols);
  }
  return static_cast<int>(cudaGetLastError());
}

int LaunchBroadcastRows(int elem_bytes, const void* x, void* out, int64_t rows, int64_t cols,
                        CUstream_st* stream) {
  const int64_t n = rows * cols;
  if (n == 0) return static_cast<int>(cudaSuccess);
  if (elem_bytes == 4) {
    BroadcastRowsKernel<uint32_t><<<BlocksFor(n), kThreads, 0, stream>>>(
        static_cast<const uint32_t*>(x), static_cast<uint32_t*>(out), n, cols);
  } else if (elem_bytes == 2) {
    BroadcastRowsKernel<uint16_t><<<BlocksFor(n), kThreads, 0, stream>>>(
        static_cast<const uint16_t*>(x), static_cast<uint16_t*>(out), n, cols);
  } else {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  return static_cast<int>(cudaGetLastError());
}

int LaunchBiasGrad(ElemType type, const void* dout, void* dbias, int64_t rows, int64_t cols,
                   bool accumulate, CUstream_st* stream) {
  if (cols == 0) return static_cast<int>(cudaSuccess);
  const dim3 block(kBiasCols, kBiasRowLanes);
  const int64_t blocks = (cols + kBiasCols - 1) / kBiasCols;
  if (blocks > 0x7fffffff) return static_cast<int>(cudaErrorInvalidValue);
  const dim3 grid(static_cast<unsigned>(blocks));
  if (type == ElemType::kF32) {
    BiasGradKernel<float><<<grid, block, 0, stream>>>(static_cast<const float*>(dout),
                                                      static_cast<float*>(dbias), rows, cols,
                                                      accumulate);
  } else {
    BiasGradKernel<uint16_t><<<grid, block, 0, stream>>>(static_cast<const uint16_t*>(dout),
                                                         static_cast<uint16_t*>(dbias), rows, cols,
                                                         accumulate);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::cuda::internal
