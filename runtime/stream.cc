#include "runtime/stream.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <algorithm>

#include <omp.h>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"
#include "runtime/threading.h"

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
  STRATA_CHECK(device.is_cpu(), "events on ", device.ToString(), " need the CUDA backend");
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

namespace {

class CpuStream final : public Stream {
 public:
  explicit CpuStream(std::string name)
      : Stream(Device::Cpu(), std::move(name)), worker_([this] { Run(); }) {}

  ~CpuStream() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    worker_.join();
  }

  void Enqueue(StreamTask task) override { Push(std::move(task), /*runs_after_error=*/false); }

  void Record(const Event& event) override {
    STRATA_CHECK(event.state() != nullptr, "stream '", name(), "': Record of an uncreated event");
    std::shared_ptr<EventState> keep = event.state();
    const uint64_t generation = keep->MarkRecorded();
    // Completes even after a failed task: streams waiting on the event must not hang; the failure
    // itself is reported by this stream's Synchronize.
    Push(
        [keep, generation]() -> absl::Status {
          keep->Complete(generation);
          return absl::OkStatus();
        },
        /*runs_after_error=*/true);
  }

  void Wait(const Event& event) override {
    STRATA_CHECK(event.state() != nullptr, "stream '", name(), "': Wait on an uncreated event");
    std::shared_ptr<EventState> keep = event.state();
    const uint64_t generation = keep->recorded();
    Enqueue([keep, generation]() -> absl::Status {
      keep->WaitFor(generation);
      return absl::OkStatus();
    });
  }

  absl::Status Synchronize() override {
    std::unique_lock lock(mutex_);
    const uint64_t target = enqueued_;
    done_cv_.wait(lock, [&] { return finished_ >= target; });
    absl::Status status = std::move(error_);
    error_ = absl::OkStatus();
    return status;
  }

 private:
  struct Queued {
    StreamTask task;
    bool runs_after_error;  // event completions
  };

  void Push(StreamTask task, bool runs_after_error) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(Queued{std::move(task), runs_after_error});
      ++enqueued_;
    }
    work_cv_.notify_one();
  }

  void Run() {
    std::unique_lock lock(mutex_);
    while (true) {
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping with nothing left to do
      Queued next = std::move(queue_.front());
      queue_.pop_front();
      const bool skip = !error_.ok() && !next.runs_after_error;
      lock.unlock();
      // Kernels in the task use the process-wide thread count (Note [thread count of other
      // threads] in threading.cc).
      if (const int threads = internal::RequestedNumThreads();
          threads > 0 && omp_get_max_threads() != threads) {
        omp_set_num_threads(threads);
      }
      absl::Status status = skip ? absl::OkStatus() : std::move(next.task)();
      next.task = nullptr;  // destroy captures outside the lock
      lock.lock();
      if (!status.ok() && error_.ok()) {
        error_ = absl::Status(status.code(),
                              absl::StrCat("stream '", name(), "': ", status.message()));
      }
      ++finished_;
      done_cv_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::deque<Queued> queue_;
  uint64_t enqueued_ = 0;
  uint64_t finished_ = 0;
  absl::Status error_;
  bool stopping_ = false;
  std::thread worker_;  // last: starts after the members above exist
};

}  // namespace

absl::StatusOr<std::unique_ptr<Stream>> Stream::Create(Device device, std::string name) {
  if (!device.is_cpu()) {
    return absl::UnimplementedError(absl::StrCat("stream '", name, "' on ", device.ToString(),
                                                 ": this build has no CUDA backend"));
  }
  return std::unique_ptr<Stream>(new CpuStream(std::move(name)));
}

}  // namespace strata
