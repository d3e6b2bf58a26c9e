#include "offload/pinned_allocator.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "offload/internal/errno_text.h"

namespace strata::offload {
namespace {

using internal::ErrnoText;

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

size_t RoundUp(size_t bytes, size_t multiple) {
  return (bytes + multiple - 1) / multiple * multiple;
}

// The mapping that holds a block: `bytes` rounded up to whole pages, at `alignment` (a power of
// two; the mapping is over-allocated and trimmed when it is larger than a page).
size_t MappedBytes(size_t bytes) { return RoundUp(bytes, PageSize()); }

}  // namespace

PinnedHostAllocator::PinnedHostAllocator(size_t capacity, MemoryLedger* ledger, std::string name)
    : Allocator(std::move(name), Device::Cpu(), MemoryTier::kHost, ledger), capacity_(capacity) {}

// Note [pinned memory is refused up front]
// Pinned pages cannot be swapped, so an over-large pool does not fail where it is made: it pushes
// everything else out of RAM until the OOM killer ends the run without a word. Two bounds stop
// that here, at allocation: the capacity the user budgeted for the host tier, and the kernel's
// RLIMIT_MEMLOCK, which mlock enforces for a process without CAP_IPC_LOCK. Both come back as
// ResourceExhausted naming the numbers a user needs to fix them.
absl::StatusOr<void*> PinnedHostAllocator::AllocateRaw(size_t bytes, size_t alignment,
                                                       int64_t in_use) {
  {
    std::lock_guard lock(mutex_);
    if (capacity_ != 0 && bytes > capacity_ - std::min(reserved_, capacity_)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("allocator '", name(), "': ", bytes, " bytes asked with ", reserved_,
                       " bytes in use exceed its capacity of ", capacity_, " bytes"));
    }
    reserved_ += bytes;
  }
  auto release = [&] {
    std::lock_guard lock(mutex_);
    reserved_ -= bytes;
  };
  const size_t mapped = MappedBytes(bytes);
  const size_t slack = alignment > PageSize() ? alignment - PageSize() : 0;
  void* base =
      mmap(nullptr, mapped + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    const int error = errno;
    release();
    return absl::ResourceExhaustedError(absl::StrCat("allocator '", name(), "': mmap of ", bytes,
                                                     " bytes with ", in_use,
                                                     " bytes in use: ", ErrnoText(error)));
  }
  // Trim the mapping to an aligned start.
  auto start = reinterpret_cast<uintptr_t>(base);
  const uintptr_t aligned = (start + alignment - 1) & ~(uintptr_t{alignment} - 1);
  if (aligned > start) munmap(base, aligned - start);
  if (const size_t tail = slack - (aligned - start); tail > 0) {
    munmap(reinterpret_cast<void*>(aligned + mapped), tail);
  }
  void* data = reinterpret_cast<void*>(aligned);
  // The system call itself: AddressSanitizer replaces libc's mlock with a no-op, and pinning is
  // the point of this allocator (its tests check the kernel's count of locked pages).
  if (syscall(SYS_mlock, data, mapped) != 0) {
    const int error = errno;
    munmap(data, mapped);
    release();
    rlimit limit{};
    getrlimit(RLIMIT_MEMLOCK, &limit);
    const std::string limit_text =
        limit.rlim_cur == RLIM_INFINITY
            ? std::string("unlimited")
            : absl::StrCat(limit.rlim_cur, " bytes (`ulimit -l` ", limit.rlim_cur / 1024, ")");
    return absl::ResourceExhaustedError(
        absl::StrCat("allocator '", name(), "': cannot pin ", bytes, " bytes with ", in_use,
                     " bytes in use: mlock: ", ErrnoText(error), "; RLIMIT_MEMLOCK is ", limit_text,
                     " and the process lacks CAP_IPC_LOCK: raise `ulimit -l` (or memlock in "
                     "/etc/security/limits.conf) or lower the host budget"));
  }
  return data;
}

void PinnedHostAllocator::FreeRaw(void* data, size_t bytes, size_t alignment) {
  // munmap unlocks the pages too.
  munmap(data, MappedBytes(bytes));
  std::lock_guard lock(mutex_);
  reserved_ -= bytes;
}

}  // namespace strata::offload
