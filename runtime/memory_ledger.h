// Exact, thread-safe accounting of bytes in use and peak bytes, per memory tier.
//
//   MemoryLedger ledger;
//   HostAllocator host(MemoryTier::kHost, &ledger);    // every allocator reports to a ledger
//   ...
//   MemoryUsage u = ledger.usage(MemoryTier::kHost);   // u.in_use, u.peak, u.live_allocations
//   ledger.ResetPeak(MemoryTier::kHost);               // peak := in_use
//
// Bytes counted are the bytes callers asked for (not alignment padding), so a memory plan's
// predicted peak can be compared with the measured one exactly.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>

#include "runtime/memory_tier.h"

namespace strata {

struct MemoryUsage {
  int64_t in_use = 0;
  int64_t peak = 0;
  int64_t live_allocations = 0;
  int64_t total_allocations = 0;  // ever made, to count allocations in a region of code
};

class MemoryLedger {
 public:
  void RecordAllocate(MemoryTier tier, int64_t bytes);
  void RecordFree(MemoryTier tier, int64_t bytes);
  MemoryUsage usage(MemoryTier tier) const;
  void ResetPeak(MemoryTier tier);

 private:
  mutable std::mutex mutex_;
  std::array<MemoryUsage, kNumMemoryTiers> tiers_{};
};

// The process-wide ledger that allocators report to when they are given none.
MemoryLedger& DefaultMemoryLedger();

}  // namespace strata
