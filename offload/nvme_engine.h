// The NVMe engine: one swap file under a directory, extents inside it, and asynchronous reads and
// writes between those extents and host memory, over io_uring (or a thread pool where the kernel
// refuses io_uring) with O_DIRECT where the file system allows it.
//
//   IoOptions io{.dir = "/mnt/nvme/strata"};
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<NvmeEngine> engine, NvmeEngine::Open(io, &ledger));
//   STRATA_ASSIGN_OR_RETURN(Extent shard, engine->Allocate(bytes));       // kNvme: +bytes
//   STRATA_RETURN_IF_ERROR(engine->RegisterBuffer(pinned.data(), pinned.size()));
//   STRATA_ASSIGN_OR_RETURN(IoTicket w, engine->Write(shard, 0, pinned.data(), rounded));
//   STRATA_RETURN_IF_ERROR(engine->Wait(w));
//   STRATA_ASSIGN_OR_RETURN(IoTicket r, engine->Read(shard, 0, pinned.data(), rounded));
//   compute->Wait(engine->CompletionEvent(r));    // a stream goes on once the read is done
//   ...
//   STRATA_RETURN_IF_ERROR(engine->Wait(r));      // every ticket is waited on once, for its status
//   engine->Free(shard);
//
// The file is unlinked as soon as it is made, so a killed process leaves nothing behind. Buffers,
// offsets and lengths are multiples of 4096 (kIoBlockAlignment), as O_DIRECT needs, whether or
// not O_DIRECT is in effect, so a program that runs buffered also runs direct. Offsets given to
// Read and Write count from the start of the extent. A request larger than the block size is
// split into blocks; at most queue_depth blocks are in flight over the whole engine, the rest wait
// in order, and a short transfer is finished by the engine (Note [one IoQueue, two
// implementations] in internal/io_queue.h). The engine is thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "offload/internal/extent_list.h"
#include "offload/internal/io_queue.h"
#include "offload/io_options.h"
#include "runtime/memory_ledger.h"
#include "runtime/stream.h"

namespace strata::offload {

struct Extent {
  int64_t offset = -1;  // in the swap file; 4096-aligned
  int64_t bytes = 0;    // as asked for; the reservation is rounded up to 4096
};

using IoTicket = uint64_t;

struct IoStats {
  int64_t bytes_read = 0, bytes_written = 0;
  int64_t requests = 0;     // blocks handed to the kernel (or the workers)
  int64_t resubmitted = 0;  // remainders of short transfers handed to it again
};

class NvmeEngine {
 public:
  // Makes one swap file under options.dir (mkstemp-like unique name), opened O_DIRECT per
  // options.direct, and unlinks it at once; starts the engine per options.engine and its
  // completion thread. Extents are accounted on `ledger` in MemoryTier::kNvme (null:
  // DefaultMemoryLedger()). Errors name the directory and errno (missing, not a directory,
  // unwritable). Fallbacks (kAuto only) are announced once per process on stderr:
  // "strata: io_uring refused (EPERM: ...); using the thread-pool engine" and
  // "strata: <dir> does not support O_DIRECT (EINVAL); using buffered IO". Explicit kUring / kOn
  // that the system refuses are errors, never a silent change. STRATA_IO_URING_DISABLE=1 in the
  // environment makes io_uring look refused (EPERM), to test or force the thread-pool engine.
  static absl::StatusOr<std::unique_ptr<NvmeEngine>> Open(const IoOptions& options,
                                                          MemoryLedger* ledger = nullptr);
  ~NvmeEngine();  // waits for IO in flight, then closes

  NvmeEngine(const NvmeEngine&) = delete;
  NvmeEngine& operator=(const NvmeEngine&) = delete;

  // Reserves `bytes` rounded up to 4096 in the swap file (first fit over freed extents, else the
  // end of the file; the file grows with fallocate, so ENOSPC is reported here, naming dir, bytes
  // and errno). Contents read as zero until written. The ledger counts the bytes asked for.
  absl::StatusOr<Extent> Allocate(int64_t bytes);
  // `extent` must come from Allocate and have no IO in flight; freeing it twice aborts.
  void Free(const Extent& extent);

  // Registers host memory that requests will target (io_uring_register_buffers; with the thread
  // engine a no-op), so IO into it uses fixed buffers. Optional: IO into unregistered 4096-aligned
  // memory works too. Call before IO starts; may be called more than once.
  absl::Status RegisterBuffer(void* data, int64_t bytes);

  // Asynchronous. [offset, offset + bytes) (from the extent's start) must lie in `extent`'s
  // reservation; `buffer`, `offset` and `bytes` must be multiples of 4096 (InvalidArgument naming
  // which and its value, even when buffered). The buffer must stay alive until the ticket is
  // waited on (or its CompletionEvent completed).
  absl::StatusOr<IoTicket> Read(const Extent& extent, int64_t offset, void* buffer, int64_t bytes);
  absl::StatusOr<IoTicket> Write(const Extent& extent, int64_t offset, const void* buffer,
                                 int64_t bytes);
  // Blocks until every request of `ticket` completed; the first failure is an error naming the
  // swap file, file offset, length and errno text. Each ticket is waited on once; a ticket never
  // issued or already waited on is InvalidArgument.
  absl::Status Wait(IoTicket ticket);
  // An Event that completes when `ticket` does (failed or not: its status comes from Wait), so a
  // stream can wait on IO: compute->Wait(engine->CompletionEvent(t)). For a ticket already waited
  // on, the event is complete; one never issued is a broken invariant (aborts).
  Event CompletionEvent(IoTicket ticket);

  IoStats stats() const;
  bool direct() const { return direct_; }               // O_DIRECT in effect
  IoEngineKind engine() const { return engine_kind_; }  // kUring or kThreads, as resolved
  const std::string& path() const { return path_; }     // the (unlinked) swap file's path
  std::string Describe() const;  // "io_uring, O_DIRECT, block 1 MiB, depth 32, <dir>"

  // Tests: the next `count` requests of at least 8192 bytes are handed to the kernel with only
  // part of their bytes, so that they come back short and the engine must resubmit the remainder;
  // or the next `count` requests fail with `error_number` (EIO, ENOSPC) as the kernel would
  // report it.
  void InjectShortTransfers(int count);
  void InjectError(int count, int error_number);

 private:
  struct Ticket {
    internal::IoOp op = internal::IoOp::kRead;
    int64_t file_offset = 0;  // of the first byte
    char* buffer = nullptr;
    int64_t bytes = 0;
    int64_t issued = 0;   // bytes handed to slots so far
    int outstanding = 0;  // slots in flight
    bool finished = false;
    bool queued = false;      // in pending_
    absl::Status status;
    std::vector<std::pair<Event, uint64_t>> events;  // CompletionEvent points to reach
  };
  // A request in flight: one block of a ticket.
  struct Slot {
    IoTicket ticket = 0;
    internal::IoOp op = internal::IoOp::kRead;
    int64_t file_offset = 0;
    char* buffer = nullptr;
    int64_t bytes = 0;
    int64_t done = 0;
  };

  NvmeEngine(const IoOptions& options, MemoryLedger* ledger);
  absl::StatusOr<IoTicket> Submit(internal::IoOp op, const Extent& extent, int64_t offset,
                                  char* buffer, int64_t bytes);
  // Makes [offset, offset + bytes) of the file read as zero and reserved on disk (Note
  // [reserving extents]); 0 or an errno. With extents_mutex_ held.
  int Reserve(int64_t offset, int64_t bytes, bool at_end);
  absl::Status CheckRequest(const char* what, const Extent& extent, int64_t offset,
                            const void* buffer, int64_t bytes) const;
  // The following run with mutex_ held.
  void Pump();
  void Issue(int slot);
  void OnCompletions(absl::Span<const internal::IoCompletion> completions);
  void MaybeFinish(Ticket& ticket);
  void PushPending(IoTicket id);
  void PopPending();

  const IoOptions options_;
  MemoryLedger* const ledger_;
  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  IoEngineKind engine_kind_ = IoEngineKind::kThreads;

  mutable std::mutex extents_mutex_;
  internal::ExtentList extent_list_;
  std::map<int64_t, int64_t> live_extents_;  // offset -> bytes asked for
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  static constexpr int64_t kZeroBytes = int64_t{1} << 20;
  std::unique_ptr<char, FreeDeleter> zeros_;  // for file systems without hole punching

  mutable std::mutex mutex_;
  std::condition_variable finished_cv_;
  // Note [no allocation per request]: tickets live in a flat hash map and pending ones in a ring,
  // both reserved up front and reused, so that issuing and completing IO allocates nothing once
  // they have grown to the number of tickets a program keeps in flight.
  absl::flat_hash_map<IoTicket, Ticket> tickets_;
  std::vector<IoTicket> pending_;  // a ring: tickets with bytes not yet issued, oldest first
  size_t pending_head_ = 0, pending_count_ = 0;
  std::vector<Slot> slots_;       // queue_depth of them, made once
  std::vector<int> free_slots_;
  IoTicket next_ticket_ = 1;
  int in_flight_ = 0;
  int prepared_ = 0;  // issued since the last Submit
  IoStats stats_;
  int inject_short_ = 0;
  int inject_error_count_ = 0;
  int inject_error_number_ = 0;

  std::unique_ptr<internal::IoQueue> queue_;  // last: its thread calls back into the above
};

namespace internal {
// Tests: forget that the fallbacks were announced, so that the next one is printed again.
void ResetFallbackAnnouncementsForTesting();
}  // namespace internal

}  // namespace strata::offload
