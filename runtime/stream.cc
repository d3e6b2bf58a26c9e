#include "runtime/stream.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"
#include "runtime/task_queue.h"

namespace strata {

// A CPU event counts how often it was recorded and how many of those points have been reached.
class EventState {
 public:
  uint64_t MarkRecorded() {
    std::lock_guard lock(mutex_);
    return ++recorded_;
  }
  void Complete(uint64_t generation) {
    {
      std::lock_guard lock(mutex_);
      completed_ = std::max(completed_, generation);
    }
    cv_.notify_all();
  }
  void WaitFor(uint64_t generation) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return completed_ >= generation; });
  }
  uint64_t recorded() const {
    std::lock_guard lock(mutex_);
    return recorded_;
  }
  bool Reached(uint64_t generation) const {
    std::lock_guard lock(mutex_);
    return completed_ >= generation;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  uint64_t recorded_ = 0;
  uint64_t completed_ = 0;
};

Event Event::Create(Device device) {
  Event e;
  e.device_ = device;
  e.state_ = std::make_shared<EventState>();
  return e;
}

bool Event::Query() const {
  STRATA_CHECK(state_ != nullptr, "Query on an event that was never created");
  return state_->Reached(state_->recorded());
}

void Event::Synchronize() const {
  STRATA_CHECK(state_ != nullptr, "Synchronize on an event that was never created");
  state_->WaitFor(state_->recorded());
}

uint64_t Event::RecordOnHost() const {
  STRATA_CHECK(state_ != nullptr, "RecordOnHost on an event that was never created");
  return state_->MarkRecorded();
}

void Event::CompleteOnHost(uint64_t point) const {
  STRATA_CHECK(state_ != nullptr, "CompleteOnHost on an event that was never created");
  state_->Complete(point);
}

uint64_t Event::LastPoint() const {
  STRATA_CHECK(state_ != nullptr, "LastPoint on an event that was never created");
  return state_->recorded();
}

void Event::SynchronizePoint(uint64_t point) const {
  STRATA_CHECK(state_ != nullptr, "SynchronizePoint on an event that was never created");
  state_->WaitFor(point);
}

namespace {

class CpuStream final : public Stream {
 public:
  explicit CpuStream(std::string name) : Stream(Device::Cpu(), name), queue_(name) {}

  void Enqueue(StreamTask task) override { queue_.Push(std::move(task), /*runs_after_error=*/false); }

  void Record(const Event& event) override {
    STRATA_CHECK(event.state() != nullptr, "stream '", name(), "': Record of an uncreated event");
    const uint64_t point = event.RecordOnHost();
    // Completes even after a failed task: streams waiting on the event must not hang; the failure
    // itself is reported by this stream's Synchronize.
    queue_.Push(
        [event, point]() -> absl::Status {
          event.CompleteOnHost(point);
          return absl::OkStatus();
        },
        /*runs_after_error=*/true);
  }

  void Wait(const Event& event) override {
    STRATA_CHECK(event.state() != nullptr, "stream '", name(), "': Wait on an uncreated event");
    const uint64_t point = event.LastPoint();
    Enqueue([event, point]() -> absl::Status {
      event.SynchronizePoint(point);
      return absl::OkStatus();
    });
  }

  absl::Status Synchronize() override { return queue_.Synchronize(); }

 private:
  TaskQueue queue_;
};

}  // namespace

namespace {
std::atomic<CudaStreamFactory> cuda_stream_factory{nullptr};
}  // namespace

void SetCudaStreamFactory(CudaStreamFactory factory) { cuda_stream_factory.store(factory); }

absl::StatusOr<std::unique_ptr<Stream>> Stream::Create(Device device, std::string name) {
  if (device.is_cuda()) {
    if (CudaStreamFactory factory = cuda_stream_factory.load()) return factory(device, name);
    return absl::UnimplementedError(
        absl::StrCat("stream '", name, "' on ", device.ToString(),
                     ": no CUDA backend in this program (a CUDA build installs it with "
                     "InstallCudaStreams, runtime/cuda/cuda_stream.h)"));
  }
  return std::unique_ptr<Stream>(new CpuStream(std::move(name)));
}

}  // namespace strata
