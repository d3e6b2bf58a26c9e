// The queue under the NVMe engine: requests go in with Prepare/Submit and come back, on the
// queue's own thread, through one completion callback (Note [one IoQueue, two implementations]).
//
//   std::unique_ptr<IoQueue> q = MakeThreadIoQueue(fd, /*depth=*/32, /*threads=*/4, on_complete);
//   q->Prepare(slot, {IoOp::kRead, file_offset, buffer, bytes});   // under the caller's lock
//   q->Submit();                                                  // the batch goes out at once
//   ... on_complete({{slot, bytes_or_minus_errno}, ...}) runs on the queue's thread
//   q->Shutdown();                                                // nothing may be in flight
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace strata::offload::internal {

// Note [one IoQueue, two implementations]
// As fio's ioengines and liburing's prep/submit/wait, an engine is a queue one submits to and
// reaps from, nothing more: io_uring (a ring and one thread that waits for completions) and a
// thread pool (workers doing pread/pwrite) implement the same three calls. Everything else —
// tickets, splitting into blocks, the bound on requests in flight, finishing short transfers,
// errors — lives once, in NvmeEngine. A queue transfers each request once: a short transfer comes
// back short, and the engine resubmits the rest.

enum class IoOp : uint8_t { kRead, kWrite };

struct IoRequest {
  IoOp op = IoOp::kRead;
  int64_t file_offset = 0;
  char* buffer = nullptr;
  int64_t bytes = 0;
};

struct IoCompletion {
  int slot = 0;
  int64_t result = 0;  // bytes transferred, or -errno
};

// Runs on the queue's thread with a batch of completions; it may Prepare and Submit again.
using IoCompletionHandler = std::function<void(absl::Span<const IoCompletion>)>;

class IoQueue {
 public:
  virtual ~IoQueue() = default;
  // The caller serializes Prepare, Submit and RegisterBuffer, and never has more than the queue's
  // depth requests between Prepare and their completion. `slot` is in [0, depth).
  virtual void Prepare(int slot, const IoRequest& request) = 0;
  virtual void Submit() = 0;
  // Makes IO into [data, data + bytes) use registered (fixed) buffers where the queue has them.
  virtual absl::Status RegisterBuffer(void* data, int64_t bytes) = 0;
  // Ends the completion thread(s); nothing may be in flight.
  virtual void Shutdown() = 0;
};

// Fails with the errno of io_uring_queue_init where the kernel refuses io_uring; with
// STRATA_IO_URING_DISABLE=1 in the environment it fails as a kernel with io_uring disabled does
// (EPERM), so that the fallback can be tested and forced.
absl::StatusOr<std::unique_ptr<IoQueue>> MakeUringIoQueue(int fd, int depth,
                                                          IoCompletionHandler on_complete);
std::unique_ptr<IoQueue> MakeThreadIoQueue(int fd, int depth, int threads,
                                           IoCompletionHandler on_complete);

}  // namespace strata::offload::internal
