// Page-aligned host memory, locked so the kernel never pages it out and DMA / io_uring can target
// it, accounted in MemoryTier::kHost of the ledger, and bounded.
//
//   PinnedHostAllocator pinned(/*capacity=*/size_t{4} << 30, &ledger);
//   STRATA_ASSIGN_OR_RETURN(Allocation staging, pinned.Allocate(64 << 20, kIoAlignment));
//   STRATA_RETURN_IF_ERROR(engine->RegisterBuffer(staging.data(), staging.size()));
//
// Every block is its own mmap, rounded up to whole pages and mlock'ed; the ledger and the
// capacity count the bytes asked for (as every allocator does), so a plan's host budget compares
// exactly with what is measured. A budget the machine cannot pin is refused with a message that
// says why (the capacity, or RLIMIT_MEMLOCK and `ulimit -l`), never an OOM kill later on
// (Note [pinned memory is refused up front]).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "runtime/allocator.h"
#include "runtime/memory_ledger.h"

namespace strata::offload {

class PinnedHostAllocator final : public Allocator {
 public:
  // capacity 0: no bound (beyond RLIMIT_MEMLOCK). An allocation past the capacity is
  // ResourceExhausted naming the capacity, in use and asked bytes. mlock refused (RLIMIT_MEMLOCK
  // without CAP_IPC_LOCK) is ResourceExhausted naming the limit (in bytes, with `ulimit -l`) and
  // the bytes asked for.
  PinnedHostAllocator(size_t capacity, MemoryLedger* ledger, std::string name = "pinned host");

  size_t capacity() const override { return capacity_; }

 protected:
  absl::StatusOr<void*> AllocateRaw(size_t bytes, size_t alignment, int64_t in_use) override;
  void FreeRaw(void* data, size_t bytes, size_t alignment) override;

 private:
  const size_t capacity_;
  std::mutex mutex_;
  size_t reserved_ = 0;  // bytes asked for by live blocks, checked against capacity_
};

}  // namespace strata::offload
