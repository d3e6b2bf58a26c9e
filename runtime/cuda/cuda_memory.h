// CUDA memory for the tiers: device memory for the device tier, pinned host memory for the host
// tier and the NVMe engine's staging buffers, each behind a CachingAllocator
// (runtime/caching_allocator.h), so their accounting is the tier's as every allocator's is.
// Built where the CUDA toolkit is found (STRATA_HAVE_CUDA).
//
//   const CudaDevices gpus = FindCudaDevices();
//   if (gpus.count == 0) return absl::FailedPreconditionError(gpus.why_none);
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<CachingAllocator> device,
//                           CreateCudaDeviceAllocator(Device::Cuda(0)));
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<CachingAllocator> pinned, CreateCudaHostAllocator());
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/caching_allocator.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/device.h"
#include "runtime/memory_ledger.h"

namespace strata {

// The CUDA devices this process sees. No driver, no device or a driver older than the toolkit
// give count 0 and why_none says which (CUDA's own error text), so that callers and tests can
// say it.
struct CudaDevices {
  int count = 0;
  std::string why_none;
};
CudaDevices FindCudaDevices();

// `device` is a CUDA device this process sees; else an error that starts with `where`: not a
// CUDA device, none found (and why), or beyond the count found.
absl::Status CheckCudaDevice(Device device, absl::string_view where);

// cudaMalloc on one device (cudaMalloc's blocks are aligned to 256 bytes).
class CudaMallocSource final : public BlockSource {
 public:
  explicit CudaMallocSource(int device) : device_(device) {}
  absl::StatusOr<void*> Allocate(size_t bytes) override;
  void Free(void* data, size_t bytes) override;
  size_t alignment() const override { return 256; }
  std::string Describe() const override;

 private:
  int device_;
};

// cudaHostAlloc, portable (pinned for every device): host memory that copies to and from the
// device at full speed and asynchronously. Page-aligned, so O_DIRECT and io_uring take it too.
class CudaHostAllocSource final : public BlockSource {
 public:
  absl::StatusOr<void*> Allocate(size_t bytes) override;
  void Free(void* data, size_t bytes) override;
  size_t alignment() const override { return 4096; }
  std::string Describe() const override { return "cudaHostAlloc"; }
};

// Host memory allocated elsewhere (the tier store's region and staging buffers) registered with
// CUDA (cudaHostRegister) while this lives, so that copies between it and a device are DMA and
// asynchronous, as from cudaHostAlloc's memory. Errors name the range and CUDA's reason.
class RegisteredHostMemory {
 public:
  static absl::StatusOr<std::unique_ptr<RegisteredHostMemory>> Register(void* data, size_t bytes);
  ~RegisteredHostMemory();
  RegisteredHostMemory(const RegisteredHostMemory&) = delete;
  RegisteredHostMemory& operator=(const RegisteredHostMemory&) = delete;

 private:
  explicit RegisteredHostMemory(void* data) : data_(data) {}
  void* const data_;
};

// The device tier's allocator on `device` (cuda:N). Errors: not a CUDA device, or beyond the
// devices found (naming how many there are and, with none, why).
absl::StatusOr<std::unique_ptr<CachingAllocator>> CreateCudaDeviceAllocator(
    Device device, MemoryLedger* ledger = nullptr);
// The host tier's allocator: pinned memory. Errors: no CUDA device to pin for.
absl::StatusOr<std::unique_ptr<CachingAllocator>> CreateCudaHostAllocator(
    MemoryLedger* ledger = nullptr);

}  // namespace strata
