#include "runtime/cuda/cuda_memory.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace strata {

CudaDevices FindCudaDevices() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clears the error for later calls
    return {0, absl::StrCat("no CUDA device: cudaGetDeviceCount says ", cudaGetErrorName(e), " (",
                            cudaGetErrorString(e), ")")};
  }
  if (count == 0) return {0, "no CUDA device: cudaGetDeviceCount found none"};
  return {count, ""};
}

absl::Status CheckCudaDevice(Device device, absl::string_view where) {
  if (!device.is_cuda()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a CUDA device"));
  }
  const CudaDevices found = FindCudaDevices();
  if (found.count == 0) {
    return absl::FailedPreconditionError(absl::StrCat(where, ": ", found.why_none));
  }
  if (device.index() >= found.count) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": this machine has ", found.count, " CUDA device(s)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<void*> CudaMallocSource::Allocate(size_t bytes) {
  if (absl::Status s = CudaStatus(cudaSetDevice(device_), "cudaSetDevice"); !s.ok()) return s;
  void* data = nullptr;
  const cudaError_t e = cudaMalloc(&data, bytes);
  if (e == cudaSuccess) return data;
  cudaGetLastError();
  size_t free = 0, total = 0;
  const bool known = cudaMemGetInfo(&free, &total) == cudaSuccess;
  return absl::Status(
      CudaStatus(e, "cudaMalloc").code(),
      absl::StrCat(Describe(), ": ", bytes, " bytes: ", cudaGetErrorName(e),
                   known ? absl::StrCat(" (", free, " of ", total, " bytes free)") : ""));
}

void CudaMallocSource::Free(void* data, size_t bytes) {
  cudaSetDevice(device_);
  cudaFree(data);  // an error here belongs to earlier asynchronous work; the block is gone
}

std::string CudaMallocSource::Describe() const {
  return absl::StrCat("cudaMalloc on ", Device::Cuda(device_).ToString());
}

absl::StatusOr<void*> CudaHostAllocSource::Allocate(size_t bytes) {
  void* data = nullptr;
  const cudaError_t e = cudaHostAlloc(&data, bytes, cudaHostAllocPortable);
  if (e == cudaSuccess) return data;
  cudaGetLastError();
  absl::Status s = CudaStatus(e, "cudaHostAlloc");
  return absl::Status(s.code(), absl::StrCat(bytes, " bytes: ", s.message()));
}

void CudaHostAllocSource::Free(void* data, size_t bytes) { cudaFreeHost(data); }

absl::StatusOr<std::unique_ptr<RegisteredHostMemory>> RegisteredHostMemory::Register(void* data,
                                                                                     size_t bytes) {
  const cudaError_t e = cudaHostRegister(data, bytes, cudaHostRegisterPortable);
  if (e == cudaSuccess)
    return std::unique_ptr<RegisteredHostMemory>(new RegisteredHostMemory(data));
  cudaGetLastError();
  absl::Status s = CudaStatus(e, "cudaHostRegister");
  return absl::Status(
      s.code(), absl::StrFormat("%d bytes of host memory at %p: %s", bytes, data, s.message()));
}

RegisteredHostMemory::~RegisteredHostMemory() { cudaHostUnregister(data_); }

absl::StatusOr<std::unique_ptr<CachingAllocator>> CreateCudaDeviceAllocator(Device device,
                                                                           MemoryLedger* ledger) {
  if (!device.is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device allocator on ", device.ToString(), ": not a CUDA device"));
  }
  const CudaDevices found = FindCudaDevices();
  if (device.index() >= found.count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device allocator on ", device.ToString(), ": ",
        found.count == 0 ? found.why_none : absl::StrCat("only ", found.count, " CUDA devices")));
  }
  return std::make_unique<CachingAllocator>(device.ToString(), device, MemoryTier::kDevice, ledger,
                                            std::make_unique<CudaMallocSource>(device.index()));
}

absl::StatusOr<std::unique_ptr<CachingAllocator>> CreateCudaHostAllocator(MemoryLedger* ledger) {
  const CudaDevices found = FindCudaDevices();
  if (found.count == 0) {
    return absl::FailedPreconditionError(absl::StrCat("CUDA host allocator: ", found.why_none));
  }
  return std::make_unique<CachingAllocator>("cuda host", Device::Cpu(), MemoryTier::kHost,
                                            ledger, std::make_unique<CudaHostAllocSource>());
}

}  // namespace strata
