// CopyQueue (runtime/cuda/copy_queue.h): a copy ordered after a compute stream's kernels reads what
// they wrote, even when they are still running as the copy is enqueued (a kernel that spins for
// tens of milliseconds, cuda/spin_kernel.h); registered host memory copies both ways. The device
// tests skip with CUDA's reason where there is none; the refusals run everywhere.
#include <cuda_runtime_api.h>

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/cuda/copy_queue.h"
#include "runtime/cuda/cuda_memory.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/spin_kernel.h"

namespace strata::cuda {
namespace {

using strata::testing::ExpectStatus;
using strata::testing::LaunchSpinThenWrite;

constexpr int64_t kSpinNs = 50'000'000;  // 50 ms: far longer than any launch or copy here

class CopyQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const CudaDevices found = FindCudaDevices();
    if (found.count == 0) GTEST_SKIP() << found.why_none;
  }
};

TEST(CopyQueueChecks, CreateNamesTheDeviceAndWhy) {
  ExpectStatus(CopyQueue::Create(Device::Cpu(), nullptr).status(),
               absl::StatusCode::kInvalidArgument, {"copy queue on cpu", "not a CUDA device"});
  const CudaDevices found = FindCudaDevices();
  const absl::Status beyond = CopyQueue::Create(Device::Cuda(found.count), nullptr).status();
  EXPECT_FALSE(beyond.ok());
  EXPECT_THAT(beyond.message(),
              ::testing::HasSubstr(absl::StrCat("copy queue on cuda:", found.count)));
}

TEST_F(CopyQueueTest, ACopyAfterComputeReadsWhatTheKernelsWrote) {
  cudaStream_t compute = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), cudaSuccess);
  std::unique_ptr<CopyQueue> copies = CopyQueue::Create(Device::Cuda(0), compute).value();
  int* flag = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&flag), sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(flag, 0, sizeof(int), compute), cudaSuccess);
  ASSERT_EQ(LaunchSpinThenWrite(flag, 7, kSpinNs, compute), cudaSuccess);
  int seen = -1;
  ASSERT_TRUE(copies->OrderAfterCompute().ok());
  ASSERT_TRUE(copies->Copy(&seen, flag, sizeof(int)).ok());
  ASSERT_TRUE(copies->Wait().ok());
  EXPECT_EQ(seen, 7);  // not the 0 from before the kernel
  copies.reset();
  cudaFree(flag);
  cudaStreamDestroy(compute);
}

TEST_F(CopyQueueTest, RegisteredHostMemoryCopiesBothWays) {
  cudaStream_t compute = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), cudaSuccess);
  std::unique_ptr<CopyQueue> copies = CopyQueue::Create(Device::Cuda(0), compute).value();
  std::vector<float> host(1 << 20), back(host.size(), 0.0f);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.25f - 3;
  absl::StatusOr<std::unique_ptr<RegisteredHostMemory>> pinned =
      RegisteredHostMemory::Register(host.data(), host.size() * sizeof(float));
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  // The same range twice is CUDA's error, with the range named.
  absl::StatusOr<std::unique_ptr<RegisteredHostMemory>> again =
      RegisteredHostMemory::Register(host.data(), host.size() * sizeof(float));
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.status().message(), ::testing::HasSubstr("bytes of host memory at"));
  float* device = nullptr;
  const int64_t bytes = static_cast<int64_t>(host.size() * sizeof(float));
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&device), bytes), cudaSuccess);
  ASSERT_TRUE(copies->Copy(device, host.data(), bytes).ok());
  ASSERT_TRUE(copies->Copy(back.data(), device, bytes).ok());
  ASSERT_TRUE(copies->Wait().ok());
  EXPECT_EQ(back, host);
  ExpectStatus(copies->Copy(nullptr, host.data(), 4), absl::StatusCode::kInvalidArgument,
               {"CopyQueue::Copy: 4 bytes"});
  copies.reset();
  cudaFree(device);
  cudaStreamDestroy(compute);
}

}  // namespace
}  // namespace strata::cuda
