// Needs a CUDA device: every test skips with CUDA's reason where there is none.
#include "runtime/cuda/cuda_memory.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata {
namespace {

using ::testing::HasSubstr;

#define SKIP_WITHOUT_CUDA_DEVICE()                                   \
  do {                                                               \
    const CudaDevices found = FindCudaDevices();                     \
    if (found.count == 0) GTEST_SKIP() << found.why_none;            \
  } while (0)

TEST(CudaMemoryTest, WithoutADeviceEveryConstructorSaysWhy) {
  const CudaDevices found = FindCudaDevices();
  if (found.count > 0) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THAT(found.why_none, HasSubstr("no CUDA device"));
  absl::StatusOr<std::unique_ptr<CachingAllocator>> d = CreateCudaDeviceAllocator(Device::Cuda(0));
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("cuda:0: no CUDA device"));
  absl::StatusOr<std::unique_ptr<CachingAllocator>> h = CreateCudaHostAllocator();
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("CUDA host allocator: no CUDA device"));
}

TEST(CudaMemoryTest, OnlyCudaDevicesWithinTheCountGetAnAllocator) {
  EXPECT_THAT(CreateCudaDeviceAllocator(Device::Cpu()).status().message(),
              HasSubstr("cpu: not a CUDA device"));
  SKIP_WITHOUT_CUDA_DEVICE();
  const int n = FindCudaDevices().count;
  absl::StatusOr<std::unique_ptr<CachingAllocator>> beyond = CreateCudaDeviceAllocator(Device::Cuda(n));
  ASSERT_FALSE(beyond.ok());
  EXPECT_THAT(beyond.status().message(), HasSubstr(absl::StrCat("only ", n, " CUDA devices")));
}

TEST(CudaMemoryTest, DeviceBlocksHoldWhatIsCopiedInAndAreReused) {
  SKIP_WITHOUT_CUDA_DEVICE();
  MemoryLedger ledger;
  std::unique_ptr<CachingAllocator> gpu = CreateCudaDeviceAllocator(Device::Cuda(0), &ledger).value();
  std::vector<float> in(1000), out(1000);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) * 0.5f - 7;
  void* first = nullptr;
  {
    Allocation a = gpu->Allocate(in.size() * sizeof(float)).value();
    EXPECT_EQ(a.device(), Device::Cuda(0));
    EXPECT_EQ(ledger.usage(MemoryTier::kDevice).in_use, 4000);
    ASSERT_EQ(cudaMemcpy(a.data(), in.data(), 4000, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(out.data(), a.data(), 4000, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(out, in);
    first = a.data();
  }
  Allocation b = gpu->Allocate(3900).value();
  EXPECT_EQ(b.data(), first);
  EXPECT_EQ(gpu->source_allocations(), 1);
}

TEST(CudaMemoryTest, MoreThanTheDeviceHoldsIsAClearError) {
  SKIP_WITHOUT_CUDA_DEVICE();
  std::unique_ptr<CachingAllocator> gpu = CreateCudaDeviceAllocator(Device::Cuda(0)).value();
  absl::StatusOr<Allocation> a = gpu->Allocate(size_t{1} << 50);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(a.status().message(), HasSubstr("cudaMalloc on cuda:0"));
}

TEST(CudaMemoryTest, PinnedHostBlocksAreHostMemoryOfTheHostTier) {
  SKIP_WITHOUT_CUDA_DEVICE();
  MemoryLedger ledger;
  std::unique_ptr<CachingAllocator> pinned = CreateCudaHostAllocator(&ledger).value();
  Allocation a = pinned->Allocate(10000, 4096).value();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 4096, 0u);
  std::memset(a.data(), 7, a.size());  // host-addressable
  EXPECT_EQ(static_cast<unsigned char*>(a.data())[9999], 7);
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 10000);
  cudaPointerAttributes attributes{};
  ASSERT_EQ(cudaPointerGetAttributes(&attributes, a.data()), cudaSuccess);
  EXPECT_EQ(attributes.type, cudaMemoryTypeHost);
}

}  // namespace
}  // namespace strata
