// Streams on a CUDA device behind the runtime's Stream and Event (runtime/stream.h).
//
//   InstallCudaStreams();   // once: Stream::Create(Device::Cuda(n), ...) makes CudaStreams now
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Stream> compute, Stream::Create(Device::Cuda(0), "compute"));
//   compute->Wait(fetched);                          // an event of any stream, CPU or CUDA
//   compute->Enqueue([&] { return cuda::GeluForward(CurrentCudaStream(), x, y); });
//   compute->Record(done);                           // reached when the device gets there
//   STRATA_RETURN_IF_ERROR(compute->Synchronize());  // first task error, or the device's
//
// Note [CUDA streams]
// A CudaStream owns a cudaStream_t and a launcher: a host worker (runtime/task_queue.h) that runs
// the stream's tasks in order on a thread bound to the device. A task enqueues kernels and copies
// onto CurrentCudaStream() and returns as soon as they are enqueued, so the launcher runs ahead
// of the device. Record(event) marks a point at call time, as a CPU stream does, and enqueues a
// host function (cudaLaunchHostFunc) that completes it when the device reaches it; so CPU
// streams, the NVMe engine and the host wait on a CUDA stream's events as on any other. Wait
// blocks the launcher (not the device) until the point is reached: the device still runs what was
// enqueued before, and nothing after the wait is launched early. That is correct for every
// producer, CPU or CUDA, at the cost of the launch latency after each cross-stream wait; the next
// step is cudaStreamWaitEvent between two CUDA streams, which needs the producer's record to be
// enqueued before the consumer's wait is (a second, "issued" point per event).
//
// Errors: a task's error skips the rest of the queue, as on CPU, and Synchronize returns it. An
// error of the device itself (an illegal address) comes back from Synchronize; CUDA then runs no
// host function of the stream, so Synchronize and the destructor complete every point still
// pending: nothing waiting on this stream's events hangs.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/device.h"
#include "runtime/stream.h"

struct CUstream_st;

namespace strata {

class TaskQueue;
namespace internal {
struct PendingPoints;
}  // namespace internal

class CudaStream final : public Stream {
 public:
  // Fails, naming the stream and the device, where there is no such CUDA device.
  static absl::StatusOr<std::unique_ptr<CudaStream>> Create(Device device, std::string name);
  ~CudaStream() override;  // waits for the queue and the device, then destroys the stream

  CUstream_st* handle() const { return handle_; }

  void Enqueue(StreamTask task) override;
  void Record(const Event& event) override;
  void Wait(const Event& event) override;
  absl::Status Synchronize() override;

 private:
  CudaStream(Device device, std::string name, CUstream_st* handle);
  void CompletePending();

  CUstream_st* const handle_;
  const std::shared_ptr<internal::PendingPoints> pending_;
  std::unique_ptr<TaskQueue> launcher_;  // last: its thread runs tasks that use the members above
};

// The cudaStream_t of the CudaStream whose task runs on this thread; nullptr on any other thread.
CUstream_st* CurrentCudaStream();

// Makes Stream::Create on a CUDA device return a CudaStream from now on.
void InstallCudaStreams();

}  // namespace strata
