// CudaStream (runtime/cuda/cuda_stream.h): order across CUDA streams, from a CUDA stream to a CPU
// stream and back, errors, and that nothing waits forever. A kernel that spins for tens of
// milliseconds (cuda/spin_kernel.h) makes the work a wrong order would overtake. The device tests
// skip with CUDA's reason where there is none; the refusals run everywhere.
#include "runtime/cuda/cuda_stream.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/cuda/cuda_memory.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/spin_kernel.h"

namespace strata {
namespace {

using testing::ExpectStatus;
using testing::LaunchSpinThenWrite;

constexpr int64_t kSpinNs = 50'000'000;  // 50 ms: far longer than any launch or copy here

#define SKIP_WITHOUT_CUDA_DEVICE()                        \
  do {                                                    \
    const CudaDevices found = FindCudaDevices();          \
    if (found.count == 0) GTEST_SKIP() << found.why_none; \
  } while (0)

absl::Status Cuda(cudaError_t e, const char* call) { return CudaStatus(e, call); }

TEST(CudaStreamChecks, CreateNamesTheStreamAndWhy) {
  ExpectStatus(CudaStream::Create(Device::Cpu(), "copy").status(),
               absl::StatusCode::kInvalidArgument, {"stream 'copy' on cpu", "not a CUDA device"});
  InstallCudaStreams();
  const CudaDevices found = FindCudaDevices();
  if (found.count > 0) {
    ExpectStatus(Stream::Create(Device::Cuda(found.count), "far").status(),
                 absl::StatusCode::kInvalidArgument, {"stream 'far'", "CUDA device(s)"});
    GTEST_SKIP() << "the rest needs a machine without a CUDA device";
  }
  ExpectStatus(Stream::Create(Device::Cuda(0), "compute").status(),
               absl::StatusCode::kFailedPrecondition,
               {"stream 'compute' on cuda:0", "no CUDA device"});
}

class CudaStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_CUDA_DEVICE();
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&flag_), sizeof(int)), cudaSuccess);
    ASSERT_EQ(cudaMemset(flag_, 0, sizeof(int)), cudaSuccess);
    ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&host_), sizeof(int)), cudaSuccess);
    *host_ = 0;
  }
  void TearDown() override {
    if (flag_ != nullptr) cudaFree(flag_);
    if (host_ != nullptr) cudaFreeHost(host_);
  }
  static std::unique_ptr<CudaStream> Make(const char* name) {
    absl::StatusOr<std::unique_ptr<CudaStream>> s = CudaStream::Create(Device::Cuda(0), name);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  int* flag_ = nullptr;  // device
  int* host_ = nullptr;  // pinned host
};

TEST_F(CudaStreamTest, TasksRunOnTheLauncherWithTheirStream) {
  std::unique_ptr<CudaStream> s = Make("compute");
  CUstream_st* seen = nullptr;
  s->Enqueue([&] {
    seen = CurrentCudaStream();
    return absl::OkStatus();
  });
  ASSERT_TRUE(s->Synchronize().ok());
  EXPECT_EQ(seen, s->handle());
  EXPECT_EQ(CurrentCudaStream(), nullptr);
}

TEST_F(CudaStreamTest, AWaitOrdersTwoCudaStreams) {
  std::unique_ptr<CudaStream> a = Make("a"), b = Make("b");
  Event written = Event::Create(Device::Cuda(0));
  a->Enqueue([&] {
    return Cuda(static_cast<cudaError_t>(LaunchSpinThenWrite(flag_, 7, kSpinNs, CurrentCudaStream())),
                "spin");
  });
  a->Record(written);
  b->Wait(written);
  b->Enqueue([&] {
    return Cuda(cudaMemcpyAsync(host_, flag_, sizeof(int), cudaMemcpyDeviceToHost,
                                CurrentCudaStream()),
                "cudaMemcpyAsync");
  });
  ASSERT_TRUE(b->Synchronize().ok());
  EXPECT_EQ(*host_, 7) << "b copied before a's kernel wrote";
  ASSERT_TRUE(a->Synchronize().ok());
}

TEST_F(CudaStreamTest, ACpuStreamWaitsForTheDevice) {
  std::unique_ptr<CudaStream> gpu = Make("gpu");
  absl::StatusOr<std::unique_ptr<Stream>> cpu = Stream::Create(Device::Cpu(), "cpu");
  ASSERT_TRUE(cpu.ok());
  Event copied = Event::Create(Device::Cuda(0));
  gpu->Enqueue([&] {
    CUstream_st* s = CurrentCudaStream();
    const int e = LaunchSpinThenWrite(flag_, 5, kSpinNs, s);
    if (e != 0) return Cuda(static_cast<cudaError_t>(e), "spin");
    return Cuda(cudaMemcpyAsync(host_, flag_, sizeof(int), cudaMemcpyDeviceToHost, s),
                "cudaMemcpyAsync");
  });
  gpu->Record(copied);
  std::atomic<int> read{-1};
  (*cpu)->Wait(copied);
  (*cpu)->Enqueue([&] {
    read = *host_;
    return absl::OkStatus();
  });
  ASSERT_TRUE((*cpu)->Synchronize().ok());
  EXPECT_EQ(read.load(), 5);
  copied.Synchronize();  // the host too: reached
  ASSERT_TRUE(gpu->Synchronize().ok());
}

TEST_F(CudaStreamTest, ACudaStreamWaitsForACpuStream) {
  std::unique_ptr<CudaStream> gpu = Make("gpu");
  absl::StatusOr<std::unique_ptr<Stream>> cpu = Stream::Create(Device::Cpu(), "io");
  ASSERT_TRUE(cpu.ok());
  Event loaded = Event::Create(Device::Cpu());
  (*cpu)->Enqueue([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    *host_ = 9;
    return absl::OkStatus();
  });
  (*cpu)->Record(loaded);
  int* back = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&back), sizeof(int)), cudaSuccess);
  *back = 0;
  gpu->Wait(loaded);
  gpu->Enqueue([&] {
    CUstream_st* s = CurrentCudaStream();
    STRATA_RETURN_IF_ERROR(Cuda(
        cudaMemcpyAsync(flag_, host_, sizeof(int), cudaMemcpyHostToDevice, s), "H2D"));
    return Cuda(cudaMemcpyAsync(back, flag_, sizeof(int), cudaMemcpyDeviceToHost, s), "D2H");
  });
  ASSERT_TRUE(gpu->Synchronize().ok());
  EXPECT_EQ(*back, 9) << "the device copied before the CPU stream wrote";
  cudaFreeHost(back);
}

TEST_F(CudaStreamTest, AFailedTaskSkipsTheRestButItsEventsComplete) {
  std::unique_ptr<CudaStream> gpu = Make("gpu");
  absl::StatusOr<std::unique_ptr<Stream>> cpu = Stream::Create(Device::Cpu(), "cpu");
  ASSERT_TRUE(cpu.ok());
  Event after = Event::Create(Device::Cuda(0));
  bool ran = false;
  gpu->Enqueue([] { return absl::DataLossError("checksum"); });
  gpu->Enqueue([&] {
    ran = true;
    return absl::OkStatus();
  });
  gpu->Record(after);
  (*cpu)->Wait(after);  // must not hang
  ASSERT_TRUE((*cpu)->Synchronize().ok());
  ExpectStatus(gpu->Synchronize(), absl::StatusCode::kDataLoss, {"stream 'gpu'", "checksum"});
  EXPECT_FALSE(ran);
  // The stream is usable again.
  gpu->Enqueue([&] {
    ran = true;
    return absl::OkStatus();
  });
  EXPECT_TRUE(gpu->Synchronize().ok());
  EXPECT_TRUE(ran);
}

TEST_F(CudaStreamTest, StreamCreateMakesCudaStreamsOnceInstalled) {
  InstallCudaStreams();
  absl::StatusOr<std::unique_ptr<Stream>> s = Stream::Create(Device::Cuda(0), "made");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->device(), Device::Cuda(0));
  EXPECT_NE(dynamic_cast<CudaStream*>(s->get()), nullptr);
}

}  // namespace
}  // namespace strata
