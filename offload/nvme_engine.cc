#include "offload/nvme_engine.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "offload/internal/errno_text.h"
#include "runtime/status.h"

namespace strata::offload {
namespace {

using internal::ErrnoText;
using internal::IoOp;

std::atomic<bool> uring_fallback_announced{false};
std::atomic<bool> direct_fallback_announced{false};

void AnnounceOnce(std::atomic<bool>& announced, const std::string& line) {
  if (!announced.exchange(true)) std::fprintf(stderr, "strata: %s\n", line.c_str());
}

int64_t RoundUp(int64_t bytes) {
  return (bytes + kIoBlockAlignment - 1) / kIoBlockAlignment * kIoBlockAlignment;
}

std::string BytesText(int64_t bytes) {
  if (bytes % (int64_t{1} << 30) == 0) return absl::StrCat(bytes >> 30, " GiB");
  if (bytes % (int64_t{1} << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  if (bytes % (int64_t{1} << 10) == 0) return absl::StrCat(bytes >> 10, " KiB");
  return absl::StrCat(bytes, " bytes");
}

absl::Status DirError(const std::string& dir, absl::string_view what, int error_number) {
  return absl::Status(absl::ErrnoToStatusCode(error_number),
                      absl::StrCat("io dir '", dir, "': ", what, ": ", ErrnoText(error_number)));
}

}  // namespace

namespace internal {
void ResetFallbackAnnouncementsForTesting() {
  uring_fallback_announced = false;
  direct_fallback_announced = false;
}
}  // namespace internal

NvmeEngine::NvmeEngine(const IoOptions& options, MemoryLedger* ledger)
    : options_(options), ledger_(ledger != nullptr ? ledger : &DefaultMemoryLedger()) {}

absl::StatusOr<std::unique_ptr<NvmeEngine>> NvmeEngine::Open(const IoOptions& options,
                                                             MemoryLedger* ledger) {
  STRATA_RETURN_IF_ERROR(options.Validate());
  if (options.dir.empty()) {
    return absl::InvalidArgumentError(
        "io options: dir is empty: name a directory for the swap file");
  }
  struct stat st {};
  if (stat(options.dir.c_str(), &st) != 0) return DirError(options.dir, "stat", errno);
  if (!S_ISDIR(st.st_mode)) return DirError(options.dir, "not a directory", ENOTDIR);

  std::unique_ptr<NvmeEngine> engine(new NvmeEngine(options, ledger));
  std::string name =
      absl::StrCat(options.dir, options.dir.back() == '/' ? "" : "/", "strata-swap-XXXXXX");
  engine->fd_ = mkostemp(name.data(), O_CLOEXEC);
  if (engine->fd_ < 0) return DirError(options.dir, "cannot create the swap file", errno);
  engine->path_ = name;
  // Nothing is left behind if the process is killed from here on.
  if (unlink(name.c_str()) != 0) return DirError(options.dir, "unlink of the swap file", errno);

  // O_DIRECT set on the open file: a file system without it refuses the flag (EINVAL) here,
  // after the file is already unlinked.
  if (options.direct != DirectIo::kOff) {
    const int flags = fcntl(engine->fd_, F_GETFL);
    if (fcntl(engine->fd_, F_SETFL, flags | O_DIRECT) == 0) {
      engine->direct_ = true;
    } else {
      const int error = errno;
      if (options.direct == DirectIo::kOn) {
        return absl::InvalidArgumentError(absl::StrCat(
            "io dir '", options.dir, "' does not support O_DIRECT (", ErrnoText(error),
            ") but direct IO is 'on': use 'auto' or 'off', or a directory on a block device"));
      }
      const char* name_text = strerrorname_np(error);
      AnnounceOnce(direct_fallback_announced,
                   absl::StrCat(options.dir, " does not support O_DIRECT (",
                                name_text != nullptr ? name_text : "?", "); using buffered IO"));
    }
  }

  const int depth = options.queue_depth;
  engine->slots_.resize(static_cast<size_t>(depth));
  engine->free_slots_.reserve(static_cast<size_t>(depth));
  for (int i = depth - 1; i >= 0; --i) engine->free_slots_.push_back(i);
  engine->tickets_.reserve(static_cast<size_t>(4 * depth));
  engine->pending_.resize(static_cast<size_t>(4 * depth));
  NvmeEngine* self = engine.get();
  auto on_complete = [self](absl::Span<const internal::IoCompletion> done) {
    self->OnCompletions(done);
  };
  if (options.engine != IoEngineKind::kThreads) {
    absl::StatusOr<std::unique_ptr<internal::IoQueue>> uring =
        internal::MakeUringIoQueue(engine->fd_, depth, on_complete);
    if (uring.ok()) {
      engine->queue_ = *std::move(uring);
      engine->engine_kind_ = IoEngineKind::kUring;
    } else if (options.engine == IoEngineKind::kUring) {
      return absl::Status(uring.status().code(),
                          absl::StrCat("io engine 'uring': the kernel refused io_uring (",
                                       uring.status().message(), "): use 'auto' or 'threads'"));
    } else {
      AnnounceOnce(uring_fallback_announced,
                   absl::StrCat("io_uring refused (", uring.status().message(),
                                "); using the thread-pool engine"));
    }
  }
  if (engine->queue_ == nullptr) {
    engine->queue_ = internal::MakeThreadIoQueue(engine->fd_, depth, options.threads, on_complete);
    engine->engine_kind_ = IoEngineKind::kThreads;
  }
  return engine;
}

NvmeEngine::~NvmeEngine() {
  {
    std::unique_lock lock(mutex_);
    finished_cv_.wait(lock, [&] { return in_flight_ == 0 && pending_count_ == 0; });
  }
  if (queue_ != nullptr) queue_->Shutdown();
  queue_.reset();
  if (fd_ >= 0) close(fd_);
  std::lock_guard lock(extents_mutex_);
  for (const auto& [offset, bytes] : live_extents_) ledger_->RecordFree(MemoryTier::kNvme, bytes);
}

// Note [reserving extents]
// A range at the end of the file is reserved with fallocate, so a full file system shows in
// Allocate, not in a later write. A freed range handed out again is zeroed first
// (FALLOC_FL_ZERO_RANGE, else punched and reserved again), so that it reads as zero like a new one.
// File systems without fallocate (ramfs) get the same meaning the slow way: the file grows with
// ftruncate (sparse, reads zero) and a reused range is overwritten with zeros.
int NvmeEngine::Reserve(int64_t offset, int64_t bytes, bool at_end) {
  // Zeroing a range in place keeps its blocks (ext4, xfs: they become unwritten, no discard);
  // punching gives them back, for file systems without ZERO_RANGE (tmpfs).
  if (!at_end && fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, bytes) == 0) {
    return 0;
  }
  if (!at_end && errno != EOPNOTSUPP) return errno;
  if (!at_end && fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, bytes) != 0) {
    if (errno != EOPNOTSUPP) return errno;
    if (zeros_ == nullptr) {
      zeros_.reset(static_cast<char*>(std::aligned_alloc(kIoBlockAlignment, kZeroBytes)));
      std::memset(zeros_.get(), 0, kZeroBytes);
    }
    for (int64_t at = 0; at < bytes;) {
      const ssize_t n = pwrite(fd_, zeros_.get(),
                               static_cast<size_t>(std::min(kZeroBytes, bytes - at)), offset + at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return n < 0 ? errno : EIO;
      at += n;
    }
  }
  if (fallocate(fd_, 0, offset, bytes) == 0) return 0;
  if (errno != EOPNOTSUPP) return errno;
  if (at_end && ftruncate(fd_, offset + bytes) != 0) return errno;
  return 0;
}

absl::StatusOr<Extent> NvmeEngine::Allocate(int64_t bytes) {
  if (bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("nvme engine: extent of ", bytes, " bytes: the size must be positive"));
  }
  const int64_t reserved = RoundUp(bytes);
  std::lock_guard lock(extents_mutex_);
  bool from_end = false;
  const int64_t offset = extent_list_.Take(reserved, &from_end);
  const int error = Reserve(offset, reserved, from_end);
  if (error != 0) {
    if (from_end) {
      extent_list_.UntakeEnd(offset, reserved);
      // fallocate may have reserved part of the range before it ran out: give it back.
      ftruncate(fd_, offset);
    } else {
      extent_list_.Give(offset, reserved);
    }
    return absl::Status(
        absl::ErrnoToStatusCode(error),
        absl::StrCat("nvme engine: cannot reserve ", bytes, " bytes (", reserved,
                     " rounded) in io dir '", options_.dir, "' (swap file ", path_, " of ",
                     extent_list_.end(), " bytes): fallocate: ", ErrnoText(error)));
  }
  live_extents_.emplace(offset, bytes);
  ledger_->RecordAllocate(MemoryTier::kNvme, bytes);
  return Extent{offset, bytes};
}

void NvmeEngine::Free(const Extent& extent) {
  std::lock_guard lock(extents_mutex_);
  auto it = live_extents_.find(extent.offset);
  STRATA_CHECK(it != live_extents_.end() && it->second == extent.bytes,
               "nvme engine: Free of an extent at ", extent.offset, " of ", extent.bytes,
               " bytes that is not allocated (freed twice?) in ", path_);
  live_extents_.erase(it);
  extent_list_.Give(extent.offset, RoundUp(extent.bytes));
  ledger_->RecordFree(MemoryTier::kNvme, extent.bytes);
}

absl::Status NvmeEngine::RegisterBuffer(void* data, int64_t bytes) {
  if (data == nullptr || bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("nvme engine: RegisterBuffer of ", bytes,
                                                   " bytes at 0x",
                                                   absl::Hex(reinterpret_cast<uintptr_t>(data))));
  }
  std::lock_guard lock(mutex_);
  return queue_->RegisterBuffer(data, bytes);
}

absl::Status NvmeEngine::CheckRequest(const char* what, const Extent& extent, int64_t offset,
                                      const void* buffer, int64_t bytes) const {
  const auto address = reinterpret_cast<uintptr_t>(buffer);
  if (buffer == nullptr || address % kIoBlockAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("nvme engine ", what, ": buffer 0x",
                                                   absl::Hex(address), " is not a multiple of ",
                                                   kIoBlockAlignment));
  }
  if (offset < 0 || offset % kIoBlockAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("nvme engine ", what, ": offset ", offset,
                                                   " is not a multiple of ", kIoBlockAlignment));
  }
  if (bytes <= 0 || bytes % kIoBlockAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("nvme engine ", what, ": length ", bytes,
                                                   " is not a positive multiple of ",
                                                   kIoBlockAlignment));
  }
  std::lock_guard lock(extents_mutex_);
  auto it = live_extents_.find(extent.offset);
  if (it == live_extents_.end() || it->second != extent.bytes) {
    return absl::InvalidArgumentError(absl::StrCat("nvme engine ", what, ": the extent at ",
                                                   extent.offset, " of ", extent.bytes,
                                                   " bytes is not allocated in ", path_));
  }
  const int64_t reserved = RoundUp(extent.bytes);
  if (offset > reserved || bytes > reserved - offset) {
    return absl::OutOfRangeError(absl::StrCat(
        "nvme engine ", what, ": [", offset, ", ", offset + bytes, ") lies outside the extent at ",
        extent.offset, " of ", extent.bytes, " bytes (", reserved, " reserved)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<IoTicket> NvmeEngine::Read(const Extent& extent, int64_t offset, void* buffer,
                                          int64_t bytes) {
  STRATA_RETURN_IF_ERROR(CheckRequest("read", extent, offset, buffer, bytes));
  return Submit(IoOp::kRead, extent, offset, static_cast<char*>(buffer), bytes);
}

absl::StatusOr<IoTicket> NvmeEngine::Write(const Extent& extent, int64_t offset, const void* buffer,
                                           int64_t bytes) {
  STRATA_RETURN_IF_ERROR(CheckRequest("write", extent, offset, buffer, bytes));
  // The kernel only reads from the buffer of a write.
  return Submit(IoOp::kWrite, extent, offset, const_cast<char*>(static_cast<const char*>(buffer)),
                bytes);
}

absl::StatusOr<IoTicket> NvmeEngine::Submit(IoOp op, const Extent& extent, int64_t offset,
                                            char* buffer, int64_t bytes) {
  std::lock_guard lock(mutex_);
  const IoTicket id = next_ticket_++;
  Ticket& ticket = tickets_[id];
  ticket.op = op;
  ticket.file_offset = extent.offset + offset;
  ticket.buffer = buffer;
  ticket.bytes = bytes;
  PushPending(id);
  Pump();
  return id;
}

void NvmeEngine::PushPending(IoTicket id) {
  if (pending_count_ == pending_.size()) {
    // Grow the ring, oldest first again.
    std::vector<IoTicket> grown(std::max<size_t>(16, 2 * pending_.size()));
    for (size_t i = 0; i < pending_count_; ++i) {
      grown[i] = pending_[(pending_head_ + i) % pending_.size()];
    }
    pending_ = std::move(grown);
    pending_head_ = 0;
  }
  pending_[(pending_head_ + pending_count_) % pending_.size()] = id;
  ++pending_count_;
  tickets_.at(id).queued = true;
}

void NvmeEngine::PopPending() {
  tickets_.at(pending_[pending_head_]).queued = false;
  pending_head_ = (pending_head_ + 1) % pending_.size();
  --pending_count_;
}

// Hands blocks of pending tickets to free slots, in order, then submits them as one batch.
void NvmeEngine::Pump() {
  while (!free_slots_.empty() && pending_count_ > 0) {
    const IoTicket id = pending_[pending_head_];
    Ticket& ticket = tickets_.at(id);
    if (!ticket.status.ok()) {
      // A failed ticket issues nothing more.
      PopPending();
      MaybeFinish(ticket);
      continue;
    }
    const int slot_index = free_slots_.back();
    free_slots_.pop_back();
    Slot& slot = slots_[static_cast<size_t>(slot_index)];
    slot.ticket = id;
    slot.op = ticket.op;
    slot.file_offset = ticket.file_offset + ticket.issued;
    slot.buffer = ticket.buffer + ticket.issued;
    slot.bytes = std::min(options_.block_size, ticket.bytes - ticket.issued);
    slot.done = 0;
    ticket.issued += slot.bytes;
    ++ticket.outstanding;
    ++in_flight_;
    ++stats_.requests;
    if (ticket.issued == ticket.bytes) PopPending();
    Issue(slot_index);
  }
  if (prepared_ > 0) {
    queue_->Submit();
    prepared_ = 0;
  }
}

// Prepares what is left of a slot's block.
void NvmeEngine::Issue(int slot_index) {
  const Slot& slot = slots_[static_cast<size_t>(slot_index)];
  int64_t bytes = slot.bytes - slot.done;
  if (inject_short_ > 0 && bytes >= 2 * kIoBlockAlignment) {
    --inject_short_;
    bytes = bytes / 2 / kIoBlockAlignment * kIoBlockAlignment;
  }
  queue_->Prepare(slot_index, internal::IoRequest{slot.op, slot.file_offset + slot.done,
                                                  slot.buffer + slot.done, bytes});
  ++prepared_;
}

void NvmeEngine::OnCompletions(absl::Span<const internal::IoCompletion> completions) {
  std::lock_guard lock(mutex_);
  for (const internal::IoCompletion& c : completions) {
    Slot& slot = slots_[static_cast<size_t>(c.slot)];
    Ticket& ticket = tickets_.at(slot.ticket);
    int64_t result = c.result;
    if (inject_error_count_ > 0) {
      --inject_error_count_;
      result = -inject_error_number_;
    }
    if (result > 0) {
      (slot.op == IoOp::kRead ? stats_.bytes_read : stats_.bytes_written) += result;
      slot.done += result;
      if (slot.done < slot.bytes) {
        ++stats_.resubmitted;
        Issue(c.slot);
        continue;
      }
    } else if (ticket.status.ok()) {
      const int error = static_cast<int>(-result);
      const std::string cause = result == 0
                                    ? std::string("the kernel transferred 0 bytes (end of file)")
                                    : ErrnoText(error);
      ticket.status =
          absl::Status(result == 0 ? absl::StatusCode::kDataLoss : absl::ErrnoToStatusCode(error),
                       absl::StrCat("nvme engine: ", slot.op == IoOp::kRead ? "read" : "write",
                                    " of ", path_, " at offset ", slot.file_offset + slot.done,
                                    ", length ", slot.bytes - slot.done, " failed: ", cause));
    }
    --ticket.outstanding;
    --in_flight_;
    free_slots_.push_back(c.slot);
    MaybeFinish(ticket);
  }
  Pump();
}

void NvmeEngine::MaybeFinish(Ticket& ticket) {
  if (ticket.finished || ticket.outstanding > 0) return;
  if (ticket.status.ok() && ticket.issued < ticket.bytes) return;
  if (ticket.queued) return;  // failed: Pump drops it from pending_ and finishes it there
  ticket.finished = true;
  for (auto& [event, point] : ticket.events) event.CompleteOnHost(point);
  ticket.events.clear();
  finished_cv_.notify_all();
}

absl::Status NvmeEngine::Wait(IoTicket id) {
  std::unique_lock lock(mutex_);
  auto it = tickets_.find(id);
  if (it == tickets_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("nvme engine: ticket ", id,
                     id < next_ticket_ && id > 0 ? " was already waited on" : " was never issued"));
  }
  // Other threads may add tickets meanwhile, which moves them in the map: look it up again.
  finished_cv_.wait(lock, [&] { return tickets_.at(id).finished; });
  it = tickets_.find(id);
  absl::Status status = std::move(it->second.status);
  tickets_.erase(it);
  return status;
}

Event NvmeEngine::CompletionEvent(IoTicket id) {
  Event event = Event::Create(Device::Cpu());
  const uint64_t point = event.RecordOnHost();
  std::lock_guard lock(mutex_);
  STRATA_CHECK(id > 0 && id < next_ticket_, "nvme engine: CompletionEvent of ticket ", id,
               " that was never issued");
  auto it = tickets_.find(id);
  if (it == tickets_.end() || it->second.finished) {
    event.CompleteOnHost(point);
  } else {
    it->second.events.emplace_back(event, point);
  }
  return event;
}

IoStats NvmeEngine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::string NvmeEngine::Describe() const {
  return absl::StrCat(
      engine_kind_ == IoEngineKind::kUring ? std::string("io_uring")
                                           : absl::StrCat("threads (", options_.threads, ")"),
      direct_ ? ", O_DIRECT" : ", buffered", ", block ", BytesText(options_.block_size), ", depth ",
      options_.queue_depth, ", ", options_.dir);
}

void NvmeEngine::InjectShortTransfers(int count) {
  std::lock_guard lock(mutex_);
  inject_short_ = count;
}

void NvmeEngine::InjectError(int count, int error_number) {
  std::lock_guard lock(mutex_);
  inject_error_count_ = count;
  inject_error_number_ = error_number;
}

}  // namespace strata::offload
