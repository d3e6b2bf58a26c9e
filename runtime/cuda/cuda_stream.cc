#include "runtime/cuda/cuda_stream.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/status.h"
#include "runtime/task_queue.h"

namespace strata {
namespace {

thread_local CUstream_st* current_stream = nullptr;

}  // namespace

// The points a CudaStream recorded that the device has not reached yet (Note [CUDA streams]).
struct internal::PendingPoints {
  std::mutex mutex;
  std::vector<std::pair<Event, uint64_t>> points;

  void Add(const Event& event, uint64_t point) {
    std::lock_guard lock(mutex);
    points.emplace_back(event, point);
  }
  void Reach(const Event& event, uint64_t point) {
    event.CompleteOnHost(point);
    std::lock_guard lock(mutex);
    auto it = std::find_if(points.begin(), points.end(), [&](const auto& p) {
      return p.first.state() == event.state() && p.second == point;
    });
    if (it != points.end()) points.erase(it);
  }
};

namespace {

// What a host function enqueued by Record completes; it owns itself.
struct Reached {
  std::shared_ptr<internal::PendingPoints> pending;
  Event event;
  uint64_t point;
};

// Runs on CUDA's callback thread: no CUDA call may be made here, and none is.
void CUDART_CB CompleteReached(void* data) {
  auto* reached = static_cast<Reached*>(data);
  reached->pending->Reach(reached->event, reached->point);
  delete reached;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaStream>> CudaStream::Create(Device device, std::string name) {
  const std::string where = absl::StrCat("stream '", name, "' on ", device.ToString());
  STRATA_RETURN_IF_ERROR(CheckCudaDevice(device, where));
  int previous = 0;
  STRATA_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  STRATA_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device.index()), "cudaSetDevice"));
  cudaStream_t handle = nullptr;
  // Non-blocking: the legacy default stream must not order work between strata's streams.
  const cudaError_t created = cudaStreamCreateWithFlags(&handle, cudaStreamNonBlocking);
  cudaSetDevice(previous);
  STRATA_RETURN_IF_ERROR(CudaStatus(created, absl::StrCat(where, ": cudaStreamCreate")));
  return std::unique_ptr<CudaStream>(new CudaStream(device, std::move(name), handle));
}

CudaStream::CudaStream(Device device, std::string name, CUstream_st* handle)
    : Stream(device, name),
      handle_(handle),
      pending_(std::make_shared<internal::PendingPoints>()),
      launcher_(std::make_unique<TaskQueue>(name)) {
  // The launcher's thread is this stream's alone: bind it to the device once.
  const int index = device.index();
  launcher_->Push(
      [handle, index]() -> absl::Status {
        current_stream = handle;
        return CudaStatus(cudaSetDevice(index), "cudaSetDevice");
      },
      /*runs_after_error=*/false);
}

CudaStream::~CudaStream() {
  launcher_->Synchronize().IgnoreError();  // the owner reads errors through Synchronize
  cudaStreamSynchronize(handle_);
  CompletePending();
  launcher_.reset();
  cudaStreamDestroy(handle_);
}

void CudaStream::Enqueue(StreamTask task) {
  launcher_->Push(std::move(task), /*runs_after_error=*/false);
}

void CudaStream::Record(const Event& event) {
  STRATA_CHECK(event.state() != nullptr, "stream '", name(), "': Record of an uncreated event");
  const uint64_t point = event.RecordOnHost();
  pending_->Add(event, point);
  // Even after a failed task: the device still reaches the point, and waiters must not hang.
  launcher_->Push(
      [handle = handle_, pending = pending_, event, point]() -> absl::Status {
        auto* reached = new Reached{pending, event, point};
        const cudaError_t e = cudaLaunchHostFunc(handle, &CompleteReached, reached);
        if (e == cudaSuccess) return absl::OkStatus();
        delete reached;
        pending->Reach(event, point);
        return CudaStatus(e, "cudaLaunchHostFunc (an event record)");
      },
      /*runs_after_error=*/true);
}

void CudaStream::Wait(const Event& event) {
  STRATA_CHECK(event.state() != nullptr, "stream '", name(), "': Wait on an uncreated event");
  const uint64_t point = event.LastPoint();
  launcher_->Push(
      [event, point]() -> absl::Status {
        event.SynchronizePoint(point);
        return absl::OkStatus();
      },
      /*runs_after_error=*/false);
}

absl::Status CudaStream::Synchronize() {
  absl::Status status = launcher_->Synchronize();
  absl::Status device = CudaStatus(cudaStreamSynchronize(handle_),
                                   absl::StrCat("stream '", name(), "': cudaStreamSynchronize"));
  if (!device.ok()) CompletePending();
  return status.ok() ? device : status;
}

void CudaStream::CompletePending() {
  std::vector<std::pair<Event, uint64_t>> left;
  {
    std::lock_guard lock(pending_->mutex);
    left.swap(pending_->points);
  }
  for (const auto& [event, point] : left) event.CompleteOnHost(point);
}

CUstream_st* CurrentCudaStream() { return current_stream; }

void InstallCudaStreams() {
  SetCudaStreamFactory([](Device device, std::string name) -> absl::StatusOr<std::unique_ptr<Stream>> {
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<CudaStream> stream,
                            CudaStream::Create(device, std::move(name)));
    return std::unique_ptr<Stream>(std::move(stream));
  });
}

}  // namespace strata
