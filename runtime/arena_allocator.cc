#include "runtime/arena_allocator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace strata {

absl::StatusOr<std::unique_ptr<ArenaAllocator>> ArenaAllocator::Create(Allocator& backing,
                                                                       size_t capacity,
                                                                       std::string name) {
  if (capacity == 0) {
    return absl::InvalidArgumentError(absl::StrCat("arena '", name, "': capacity must be > 0"));
  }
  absl::StatusOr<Allocation> block = backing.Allocate(capacity, kIoAlignment);
  if (!block.ok()) {
    return absl::Status(block.status().code(),
                        absl::StrCat("arena '", name, "': reserving ", capacity, " bytes from '",
                                     backing.name(), "': ", block.status().message()));
  }
  return std::unique_ptr<ArenaAllocator>(new ArenaAllocator(
      *std::move(block), capacity, std::move(name), std::make_unique<MemoryLedger>()));
}

ArenaAllocator::ArenaAllocator(Allocation block, size_t capacity, std::string name,
                               std::unique_ptr<MemoryLedger> ledger)
    : Allocator(std::move(name), block.device(), block.tier(), ledger.get()),
      own_ledger_(std::move(ledger)),
      block_(std::move(block)),
      capacity_(capacity) {
  free_[0] = capacity_;
}

ArenaAllocator::~ArenaAllocator() = default;

size_t ArenaAllocator::LargestFreeBlock() const {
  std::lock_guard lock(mutex_);
  size_t largest = 0;
  for (const auto& [offset, size] : free_) largest = std::max(largest, size);
  return largest;
}

absl::StatusOr<void*> ArenaAllocator::AllocateRaw(size_t bytes, size_t alignment,
                                                  int64_t in_use) {
  std::lock_guard lock(mutex_);
  const uintptr_t base = reinterpret_cast<uintptr_t>(block_.data());
  size_t largest = 0;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    const auto [start, size] = *it;
    largest = std::max(largest, size);
    const uintptr_t aligned = (base + start + alignment - 1) & ~(uintptr_t{alignment} - 1);
    const size_t padding = aligned - (base + start);
    if (padding > size || bytes > size - padding) continue;  // (padding + bytes may wrap)
    const size_t taken = padding + bytes;
    free_.erase(it);
    if (taken < size) free_[start + taken] = size - taken;
    in_use_[start + padding] = Extent{start, taken};
    return reinterpret_cast<void*>(aligned);
  }
  if (bytes > capacity_ - static_cast<size_t>(in_use)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "arena '", name(), "': cannot allocate ", bytes, " bytes: capacity ", capacity_,
        " bytes with ", in_use, " in use (", capacity_ - in_use, " free)"));
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "arena '", name(), "': cannot allocate ", bytes, " bytes (alignment ", alignment,
      "): capacity ", capacity_, " bytes with ", in_use, " in use, but the largest free block is ",
      largest, " bytes (fragmented)"));
}

void ArenaAllocator::FreeRaw(void* data, size_t bytes, size_t alignment) {
  std::lock_guard lock(mutex_);
  const size_t offset = static_cast<size_t>(static_cast<std::byte*>(data) -
                                            static_cast<std::byte*>(block_.data()));
  auto used = in_use_.find(offset);
  STRATA_CHECK(used != in_use_.end(), "arena '", name(), "': free of unknown offset ", offset);
  size_t start = used->second.start;
  size_t size = used->second.size;
  in_use_.erase(used);
  // Coalesce with the free neighbours on both sides.
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + size) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      size += prev->second;
      free_.erase(prev);
    }
  }
  free_[start] = size;
}

}  // namespace strata
