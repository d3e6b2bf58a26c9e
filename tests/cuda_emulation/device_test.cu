// The CUDA emulation itself (device.h, runtime.cc): warp shuffles and votes, barriers and shared
// memory, multi-dimensional grids and blocks, launch errors, the conversions, and the aborts for
// what it does not emulate. Compiled as the kernels are (rewrite_launches.cmake, then g++).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/dtype.h"

namespace {

constexpr unsigned kAll = 0xFFFFFFFFu;

__global__ void ShuffleKernel(float* idx, float* xr, int* down, int* up, double* dsum,
                              unsigned* ballot, int* any_all) {
  const int t = threadIdx.x, lane = t % 32;
  idx[t] = __shfl_sync(kAll, 1.5f * t, 31 - lane);
  xr[t] = __shfl_xor_sync(kAll, 1.5f * t, 5);
  down[t] = __shfl_down_sync(kAll, t, 4);
  up[t] = __shfl_up_sync(kAll, t, 3);
  double v = t;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kAll, v, offset);
  dsum[t] = v;
  ballot[t] = __ballot_sync(kAll, lane % 3 == 0);
  any_all[t] = (__any_sync(kAll, t == 40) ? 1 : 0) + (__all_sync(kAll, lane < 31) ? 2 : 0);
}

TEST(CudaEmulationTest, WarpShufflesAndVotes) {
  constexpr int n = 64;
  std::vector<float> idx(n), xr(n);
  std::vector<int> down(n), up(n), any_all(n);
  std::vector<double> dsum(n);
  std::vector<unsigned> ballot(n);
  ShuffleKernel<<<1, n>>>(idx.data(), xr.data(), down.data(), up.data(), dsum.data(),
                          ballot.data(), any_all.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int t = 0; t < n; ++t) {
    const int warp = t / 32 * 32, lane = t % 32;
    EXPECT_EQ(idx[t], 1.5f * (warp + 31 - lane)) << t;
    EXPECT_EQ(xr[t], 1.5f * (warp + (lane ^ 5))) << t;
    EXPECT_EQ(down[t], lane + 4 < 32 ? t + 4 : t) << t;
    EXPECT_EQ(up[t], lane >= 3 ? t - 3 : t) << t;
    EXPECT_EQ(dsum[t], 32.0 * warp + 496.0) << t;  // 0 + 1 + ... + 31 = 496
    EXPECT_EQ(ballot[t], 0x49249249u) << t;         // lanes 0, 3, ..., 30
    EXPECT_EQ(any_all[t], t < 32 ? 0 : 1) << t;     // lane 31 is never < 31
  }
}

// Each block of (8, 4) threads sums its threads' values through shared memory, tree-wise, with a
// barrier per level; the grid is (3, 2).
__global__ void BlockTreeSumKernel(const int* in, int* out) {
  __shared__ int partial[32];
  const int t = threadIdx.y * blockDim.x + threadIdx.x;
  const int block = blockIdx.y * gridDim.x + blockIdx.x;
  partial[t] = in[block * 32 + t];
  for (int half = 16; half > 0; half /= 2) {
    __syncthreads();
    const int mine = t < half ? partial[t] + partial[t + half] : 0;
    __syncthreads();
    if (t < half) partial[t] = mine;
  }
  __syncthreads();
  if (t == 0) out[block] = partial[0];
}

TEST(CudaEmulationTest, BarriersAndSharedMemoryInTwoDimensions) {
  std::vector<int> in(6 * 32), out(6, -1);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i * i % 97);
  BlockTreeSumKernel<<<dim3(3, 2), dim3(8, 4)>>>(in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int b = 0; b < 6; ++b) {
    int want = 0;
    for (int t = 0; t < 32; ++t) want += in[b * 32 + t];
    EXPECT_EQ(out[b], want) << b;
  }
}

__global__ void NothingKernel(int* out) { out[threadIdx.x] = 1; }

TEST(CudaEmulationTest, ABadLaunchRunsNothingAndIsTheLastError) {
  int out[2] = {0, 0};
  NothingKernel<<<0, 2>>>(out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  NothingKernel<<<1, 2048>>>(out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // read once, then cleared
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  NothingKernel<<<1, 2, 0, stream>>>(out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(out[0] + out[1], 0);
}

TEST(CudaEmulationTest, ConversionsRoundAsTheCpu) {
  for (uint64_t bits = 0; bits <= 0xFFFFFFFFu; bits += 9973) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(bits));
    if (std::isnan(f)) continue;
    ASSERT_EQ(__bfloat16_as_ushort(__float2bfloat16_rn(f)), strata::FloatToBf16(f)) << f;
    ASSERT_EQ(__half_as_ushort(__float2half_rn(f)), strata::FloatToF16(f)) << f;
  }
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto u = static_cast<uint16_t>(h);
    const float want = strata::F16ToFloat(u), got = __half2float(__ushort_as_half(u));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want)) << h;
    }
  }
  EXPECT_EQ(__bfloat16_as_ushort(__float2bfloat16_rn(NAN)), 0x7FFF);
  EXPECT_EQ(__half_as_ushort(__float2half_rn(NAN)), 0x7FFF);
}

__global__ void DivergentShuffleKernel(float* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(kAll, 1.0f, 0);
}
__global__ void EarlyReturnBeforeBarrierKernel(float* out) {
  if (threadIdx.x == 7) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}
__global__ void TwoBarriersKernel(float* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0f;
}
__global__ void PartialMaskKernel(float* out) {
  out[threadIdx.x] = __shfl_sync(0x0000FFFFu, 1.0f, 0);
}
__global__ void PartialWarpKernel(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(kAll, 1.0f, 1);
}

TEST(CudaEmulationDeathTest, WhatTheHardwareLeavesUndefinedAborts) {
  std::vector<float> out(64);
  EXPECT_DEATH(DivergentShuffleKernel<<<1, 32>>>(out.data()),
               "__shfl_sync at .*device_test.cu:[0-9]+ is not reached by every lane of warp 0: "
               "lane 16 has returned");
  EXPECT_DEATH(EarlyReturnBeforeBarrierKernel<<<1, 64>>>(out.data()),
               "__syncthreads at .*device_test.cu:[0-9]+ is not reached by every thread of the "
               "block: thread 7 has returned");
  EXPECT_DEATH(TwoBarriersKernel<<<1, 64>>>(out.data()),
               "the threads of a block wait at different __syncthreads");
  EXPECT_DEATH(PartialMaskKernel<<<1, 32>>>(out.data()), "only the full mask");
  EXPECT_DEATH(PartialWarpKernel<<<1, 48>>>(out.data()), "partial warps are not emulated");
  EXPECT_DEATH(__syncthreads(), "called outside a kernel");
}

}  // namespace
