#include "runtime/cuda/copy_queue.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"

namespace strata::cuda {

absl::StatusOr<std::unique_ptr<CopyQueue>> CopyQueue::Create(Device device, CUstream_st* compute) {
  const std::string where = absl::StrCat("copy queue on ", device.ToString());
  STRATA_RETURN_IF_ERROR(CheckCudaDevice(device, where));
  int previous = 0;
  STRATA_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  STRATA_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device.index()), "cudaSetDevice"));
  cudaStream_t copy = nullptr;
  cudaEvent_t computed = nullptr;
  // Non-blocking: the legacy default stream must not order the copies with anything.
  cudaError_t made = cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking);
  const char* call = "cudaStreamCreate";
  if (made == cudaSuccess) {
    made = cudaEventCreateWithFlags(&computed, cudaEventDisableTiming);
    call = "cudaEventCreate";
    if (made != cudaSuccess) cudaStreamDestroy(copy);
  }
  cudaSetDevice(previous);  // the caller's thread keeps its device
  STRATA_RETURN_IF_ERROR(CudaStatus(made, absl::StrCat(where, ": ", call)));
  return std::unique_ptr<CopyQueue>(new CopyQueue(device.index(), compute, copy, computed));
}

CopyQueue::~CopyQueue() {
  cudaStreamSynchronize(copy_);
  cudaEventDestroy(computed_);
  cudaStreamDestroy(copy_);
}

absl::Status CopyQueue::OnDevice() { return CudaStatus(cudaSetDevice(device_), "cudaSetDevice"); }

absl::Status CopyQueue::OrderAfterCompute() {
  std::lock_guard lock(mutex_);
  STRATA_RETURN_IF_ERROR(OnDevice());
  STRATA_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(computed_, compute_), "cudaEventRecord"));
  return CudaStatus(cudaStreamWaitEvent(copy_, computed_, 0), "cudaStreamWaitEvent");
}

absl::Status CopyQueue::Copy(void* dst, const void* src, int64_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  if (bytes < 0 || dst == nullptr || src == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("CopyQueue::Copy: %d bytes from %p to %p", bytes, src, dst));
  }
  std::lock_guard lock(mutex_);
  STRATA_RETURN_IF_ERROR(OnDevice());
  return CudaStatus(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDefault, copy_),
                    "cudaMemcpyAsync");
}

// Without the mutex: another thread may enqueue while this one waits (its copies are then
// waited for too, or not: they are its own to wait for).
absl::Status CopyQueue::Wait() {
  return CudaStatus(cudaStreamSynchronize(copy_), "cudaStreamSynchronize (copy queue)");
}

}  // namespace strata::cuda
