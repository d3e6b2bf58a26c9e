#include "runtime/caching_allocator.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace strata {
namespace {

constexpr size_t kSmallClass = 512;
constexpr size_t kLargeClass = size_t{2} << 20;
constexpr size_t kLargeFrom = size_t{1} << 20;

}  // namespace

CachingAllocator::CachingAllocator(std::string name, Device device, MemoryTier tier,
                                   MemoryLedger* ledger, std::unique_ptr<BlockSource> source)
    : Allocator(std::move(name), device, tier, ledger), source_(std::move(source)) {}

CachingAllocator::~CachingAllocator() { ReleaseCache(); }

size_t CachingAllocator::BlockBytes(size_t bytes) {
  const size_t step = bytes < kLargeFrom ? kSmallClass : kLargeClass;
  if (bytes > std::numeric_limits<size_t>::max() - (step - 1)) return 0;  // no such block
  return (bytes + step - 1) / step * step;
}

absl::StatusOr<void*> CachingAllocator::AllocateRaw(size_t bytes, size_t alignment,
                                                    int64_t in_use) {
  if (alignment > source_->alignment()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "allocator '", name(), "': alignment ", alignment, " is more than the ",
        source_->alignment(), " that ", source_->Describe(), " gives"));
  }
  const size_t block = BlockBytes(bytes);
  if (block == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("allocator '", name(), "': ", bytes, " bytes is no block size"));
  }
  std::lock_guard lock(mutex_);
  if (auto it = free_.find(block); it != free_.end() && !it->second.empty()) {
    void* data = it->second.back();
    it->second.pop_back();
    cached_ -= block;
    return data;
  }
  absl::StatusOr<void*> data = source_->Allocate(block);
  if (!data.ok() && cached_ > 0) {  // the cache may hold what the request needs
    ReleaseCacheLocked();
    data = source_->Allocate(block);
  }
  if (!data.ok()) {
    return absl::Status(data.status().code(),
                        absl::StrCat("allocator '", name(), "': ", bytes, " bytes with ", in_use,
                                     " in use (", reserved_, " reserved): ",
                                     data.status().message()));
  }
  reserved_ += block;
  ++source_allocations_;
  return *data;
}

void CachingAllocator::FreeRaw(void* data, size_t bytes, size_t alignment) {
  const size_t block = BlockBytes(bytes);
  std::lock_guard lock(mutex_);
  free_[block].push_back(data);
  cached_ += block;
}

void CachingAllocator::ReleaseCacheLocked() {
  for (auto& [block, blocks] : free_) {
    for (void* data : blocks) source_->Free(data, block);
    reserved_ -= block * blocks.size();
    cached_ -= block * blocks.size();
  }
  free_.clear();
}

void CachingAllocator::ReleaseCache() {
  std::lock_guard lock(mutex_);
  ReleaseCacheLocked();
}

size_t CachingAllocator::reserved_bytes() const {
  std::lock_guard lock(mutex_);
  return reserved_;
}

size_t CachingAllocator::cached_bytes() const {
  std::lock_guard lock(mutex_);
  return cached_;
}

int64_t CachingAllocator::source_allocations() const {
  std::lock_guard lock(mutex_);
  return source_allocations_;
}

}  // namespace strata
