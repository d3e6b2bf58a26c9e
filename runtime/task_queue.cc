#include "runtime/task_queue.h"

#include <omp.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/threading.h"

namespace strata {

TaskQueue::TaskQueue(std::string name) : name_(std::move(name)), worker_([this] { Run(); }) {}

TaskQueue::~TaskQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  worker_.join();
}

void TaskQueue::Push(StreamTask task, bool runs_after_error) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(Queued{std::move(task), runs_after_error});
    ++enqueued_;
  }
  work_cv_.notify_one();
}

absl::Status TaskQueue::Synchronize() {
  std::unique_lock lock(mutex_);
  const uint64_t target = enqueued_;
  done_cv_.wait(lock, [&] { return finished_ >= target; });
  absl::Status status = std::move(error_);
  error_ = absl::OkStatus();
  return status;
}

void TaskQueue::Run() {
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
                            absl::StrCat("stream '", name_, "': ", status.message()));
    }
    ++finished_;
    done_cv_.notify_all();
  }
}

}  // namespace strata
