// Streams are ordered queues of work; events order work across streams without host syncs.
//
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Stream> compute, Stream::Create(Device::Cpu(), "compute"));
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Stream> copy, Stream::Create(Device::Cpu(), "copy"));
//   Event loaded = Event::Create(Device::Cpu());   // a point in a queue: any stream may wait on it
//   copy->Enqueue([&] { return LoadShard(...); });
//   copy->Record(loaded);             // marks "everything enqueued on copy so far"
//   compute->Wait(loaded);            // compute's later work runs after that point
//   compute->Enqueue([&] { return Forward(...); });
//   STRATA_RETURN_IF_ERROR(compute->Synchronize());   // host waits; returns the first error
//
// On CPU a stream is one worker thread that runs its queue in order, so IO, communication and
// compute overlap on CPU as they do on a GPU. A CUDA stream (runtime/cuda/cuda_stream.h)
// implements the same interface: its tasks run on a launcher thread and enqueue kernels onto its
// cudaStream_t, and its Record completes the event when the device gets there. An event is a
// point in some stream's queue whatever the device, so any stream waits on any other. A task
// returns a Status; after the first failure the stream skips the rest of its queue (except event
// records, which still complete so that streams waiting on them never hang) and Synchronize
// reports that failure, naming the stream.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/device.h"

namespace strata {

class EventState;

// A point in a stream's queue. Copies share the same event. Re-recording moves the point.
class Event {
 public:
  Event() = default;  // not yet created: Record on a stream creates nothing, it aborts
  static Event Create(Device device);

  // True when the work before the last Record has finished (or it was never recorded).
  bool Query() const;
  // Blocks the calling host thread until Query() is true.
  void Synchronize() const;
  // For producers that are not streams (the NVMe engine's completion thread): RecordOnHost marks a
  // new point, as a stream's Record does, and returns it; CompleteOnHost(point) reaches it, and
  // every stream or host waiting on it goes on.
  uint64_t RecordOnHost() const;
  void CompleteOnHost(uint64_t point) const;
  // For consumers that are not streams (a CUDA stream's launcher): the last point recorded so
  // far, and a host wait until a given point is reached.
  uint64_t LastPoint() const;
  void SynchronizePoint(uint64_t point) const;
  Device device() const { return device_; }
  const std::shared_ptr<EventState>& state() const { return state_; }

 private:
  Device device_;
  std::shared_ptr<EventState> state_;
};

using StreamTask = absl::AnyInvocable<absl::Status() &&>;

class Stream {
 public:
  // A CPU stream, or on a CUDA device the installed CUDA backend's stream (an Unimplemented
  // error where none is installed).
  static absl::StatusOr<std::unique_ptr<Stream>> Create(Device device, std::string name);
  virtual ~Stream() = default;

  Device device() const { return device_; }
  const std::string& name() const { return name_; }

  virtual void Enqueue(StreamTask task) = 0;
  virtual void Record(const Event& event) = 0;
  virtual void Wait(const Event& event) = 0;
  // Waits for everything enqueued so far; returns the first error of a task, if any, and clears
  // it so the stream can be used again.
  virtual absl::Status Synchronize() = 0;

 protected:
  Stream(Device device, std::string name) : device_(device), name_(std::move(name)) {}

 private:
  const Device device_;
  const std::string name_;
};

// How Stream::Create makes a stream on a CUDA device. The CUDA backend (a library above this
// one) installs it: InstallCudaStreams in runtime/cuda/cuda_stream.h.
using CudaStreamFactory = absl::StatusOr<std::unique_ptr<Stream>> (*)(Device device,
                                                                      std::string name);
void SetCudaStreamFactory(CudaStreamFactory factory);

}  // namespace strata
