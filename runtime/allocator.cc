#include "runtime/allocator.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace strata {

Allocation& Allocation::operator=(Allocation&& other) noexcept {
  if (this != &other) {
    Reset();
    allocator_ = std::exchange(other.allocator_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    alignment_ = std::exchange(other.alignment_, 0);
  }
  return *this;
}

Device Allocation::device() const { return allocator_ ? allocator_->device() : Device::Cpu(); }
MemoryTier Allocation::tier() const {
  return allocator_ ? allocator_->tier() : MemoryTier::kDevice;
}

void Allocation::Reset() {
  if (allocator_ != nullptr) allocator_->Free(data_, size_, alignment_);
  allocator_ = nullptr;
  data_ = nullptr;
  size_ = 0;
  alignment_ = 0;
}

Allocator::Allocator(std::string name, Device device, MemoryTier tier, MemoryLedger* ledger)
    : name_(std::move(name)),
      device_(device),
      tier_(tier),
      ledger_(ledger != nullptr ? ledger : &DefaultMemoryLedger()) {}

Allocator::~Allocator() {
  STRATA_CHECK(usage_.live_allocations == 0, "allocator '", name_, "' destroyed with ",
               usage_.live_allocations, " live allocations (", usage_.in_use, " bytes)");
}

absl::StatusOr<Allocation> Allocator::Allocate(size_t bytes, size_t alignment) {
  if (alignment == 0 || !std::has_single_bit(alignment)) {
    return absl::InvalidArgumentError(absl::StrCat("allocator '", name_, "': alignment ",
                                                   alignment, " is not a power of two"));
  }
  if (bytes == 0) return Allocation();
  int64_t in_use;
  {
    std::lock_guard lock(mutex_);
    in_use = usage_.in_use;
  }
  STRATA_ASSIGN_OR_RETURN(void* data, AllocateRaw(bytes, alignment, in_use));
  {
    std::lock_guard lock(mutex_);
    usage_.in_use += static_cast<int64_t>(bytes);
    usage_.peak = std::max(usage_.peak, usage_.in_use);
    ++usage_.live_allocations;
    ++usage_.total_allocations;
  }
  ledger_->RecordAllocate(tier_, static_cast<int64_t>(bytes));
  return Allocation(this, data, bytes, alignment);
}

void Allocator::Free(void* data, size_t bytes, size_t alignment) {
  FreeRaw(data, bytes, alignment);
  {
    std::lock_guard lock(mutex_);
    usage_.in_use -= static_cast<int64_t>(bytes);
    --usage_.live_allocations;
  }
  ledger_->RecordFree(tier_, static_cast<int64_t>(bytes));
}

MemoryUsage Allocator::usage() const {
  std::lock_guard lock(mutex_);
  return usage_;
}

void Allocator::ResetPeak() {
  std::lock_guard lock(mutex_);
  usage_.peak = usage_.in_use;
}

HostAllocator::HostAllocator(MemoryTier tier, MemoryLedger* ledger, std::string name)
    : Allocator(name.empty() ? absl::StrCat("host/", MemoryTierName(tier)) : std::move(name),
                Device::Cpu(), tier, ledger) {}

absl::StatusOr<void*> HostAllocator::AllocateRaw(size_t bytes, size_t alignment, int64_t in_use) {
  // aligned_alloc wants a size that is a multiple of the alignment (and the rounding must not wrap
  // around to a tiny block).
  const bool wraps = bytes > std::numeric_limits<size_t>::max() - (alignment - 1);
  const size_t rounded = wraps ? 0 : (bytes + alignment - 1) / alignment * alignment;
  void* p = wraps ? nullptr : std::aligned_alloc(alignment, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "allocator '", name(), "': out of host memory for ", bytes, " bytes (aligned to ",
        alignment, ") with ", in_use, " bytes in use"));
  }
  return p;
}

void HostAllocator::FreeRaw(void* data, size_t bytes, size_t alignment) { std::free(data); }

Allocator& DefaultCpuAllocator() {
  static Allocator* allocator = new HostAllocator(MemoryTier::kDevice, nullptr, "cpu");
  return *allocator;
}

}  // namespace strata
