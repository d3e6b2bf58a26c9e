#include "runtime/memory_ledger.h"

#include <algorithm>

#include "runtime/status.h"

namespace strata {

void MemoryLedger::RecordAllocate(MemoryTier tier, int64_t bytes) {
  std::lock_guard lock(mutex_);
  MemoryUsage& u = tiers_[static_cast<int>(tier)];
  u.in_use += bytes;
  u.peak = std::max(u.peak, u.in_use);
  ++u.live_allocations;
  ++u.total_allocations;
}

void MemoryLedger::RecordFree(MemoryTier tier, int64_t bytes) {
  std::lock_guard lock(mutex_);
  MemoryUsage& u = tiers_[static_cast<int>(tier)];
  STRATA_CHECK(u.in_use >= bytes && u.live_allocations > 0, "ledger for tier ",
               MemoryTierName(tier), " frees ", bytes, " bytes with only ", u.in_use, " in use");
  u.in_use -= bytes;
  --u.live_allocations;
}

MemoryUsage MemoryLedger::usage(MemoryTier tier) const {
  std::lock_guard lock(mutex_);
  return tiers_[static_cast<int>(tier)];
}

void MemoryLedger::ResetPeak(MemoryTier tier) {
  std::lock_guard lock(mutex_);
  MemoryUsage& u = tiers_[static_cast<int>(tier)];
  u.peak = u.in_use;
}

MemoryLedger& DefaultMemoryLedger() {
  static MemoryLedger* ledger = new MemoryLedger();  // never destroyed: outlives static tensors
  return *ledger;
}

}  // namespace strata
