// An ordered queue of host tasks that one worker thread runs: the engine of a CPU stream, and of
// a CUDA stream's launcher, whose tasks enqueue kernels (runtime/cuda/cuda_stream.h).
//
//   TaskQueue queue("compute");
//   queue.Push([] { return Forward(); }, /*runs_after_error=*/false);
//   queue.Push([] { done.CompleteOnHost(point); return absl::OkStatus(); }, /*runs_after_error=*/true);
//   STRATA_RETURN_IF_ERROR(queue.Synchronize());   // "stream 'compute': <first error>"
//
// After the first failed task the queue skips the tasks pushed without runs_after_error (so that
// nothing runs on top of a failure) but still runs the others (event completions, so that streams
// waiting on them never hang).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "runtime/stream.h"

namespace strata {

class TaskQueue {
 public:
  // `name` prefixes the errors Synchronize returns: "stream '<name>': ...".
  explicit TaskQueue(std::string name);
  ~TaskQueue();  // runs what is queued, then joins the worker
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  void Push(StreamTask task, bool runs_after_error);
  // Waits for every task pushed so far; returns the first error, if any, and clears it.
  absl::Status Synchronize();

 private:
  struct Queued {
    StreamTask task;
    bool runs_after_error;
  };
  void Run();

  const std::string name_;
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

}  // namespace strata
