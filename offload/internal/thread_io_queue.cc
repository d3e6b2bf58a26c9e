// The thread-pool IoQueue, for kernels that refuse io_uring: workers take prepared requests in
// order and do one pread/pwrite each, then report it themselves.
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "offload/internal/io_queue.h"
#include "runtime/status.h"

namespace strata::offload::internal {
namespace {

class ThreadIoQueue final : public IoQueue {
 public:
  ThreadIoQueue(int fd, int depth, int threads, IoCompletionHandler on_complete)
      : fd_(fd), on_complete_(std::move(on_complete)), ring_(static_cast<size_t>(depth)) {
    workers_.reserve(static_cast<size_t>(threads));
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }

  ~ThreadIoQueue() override { Shutdown(); }

  void Prepare(int slot, const IoRequest& request) override {
    std::lock_guard lock(mutex_);
    STRATA_CHECK(count_ + prepared_ < ring_.size(), "thread io queue: more than ", ring_.size(),
                 " requests prepared");
    ring_[(head_ + count_ + prepared_) % ring_.size()] = Queued{slot, request};
    ++prepared_;
  }

  void Submit() override {
    size_t released;
    {
      std::lock_guard lock(mutex_);
      released = prepared_;
      count_ += prepared_;
      prepared_ = 0;
    }
    if (released == 1) {
      cv_.notify_one();
    } else if (released > 1) {
      cv_.notify_all();
    }
  }

  absl::Status RegisterBuffer(void* data, int64_t bytes) override { return absl::OkStatus(); }

  void Shutdown() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  struct Queued {
    int slot = 0;
    IoRequest request;
  };

  void Work() {
    while (true) {
      Queued next;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stopping_ || count_ > 0; });
        if (count_ == 0) return;
        next = ring_[head_];
        head_ = (head_ + 1) % ring_.size();
        --count_;
      }
      const IoRequest& r = next.request;
      ssize_t n;
      do {
        n = r.op == IoOp::kRead
                ? pread(fd_, r.buffer, static_cast<size_t>(r.bytes), r.file_offset)
                : pwrite(fd_, r.buffer, static_cast<size_t>(r.bytes), r.file_offset);
      } while (n < 0 && errno == EINTR);
      const IoCompletion done{next.slot, n < 0 ? -int64_t{errno} : int64_t{n}};
      on_complete_(absl::MakeConstSpan(&done, 1));
    }
  }

  const int fd_;
  IoCompletionHandler on_complete_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Queued> ring_;  // submitted [head_, head_ + count_), then prepared ones
  size_t head_ = 0, count_ = 0, prepared_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;  // last: they start once the members above exist
};

}  // namespace

std::unique_ptr<IoQueue> MakeThreadIoQueue(int fd, int depth, int threads,
                                           IoCompletionHandler on_complete) {
  return std::make_unique<ThreadIoQueue>(fd, depth, threads, std::move(on_complete));
}

}  // namespace strata::offload::internal
