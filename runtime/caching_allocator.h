// An allocator that keeps freed blocks for the next request of their size, over a slow source of
// raw blocks (cudaMalloc and cudaHostAlloc synchronize the device and cost tens of microseconds to
// milliseconds each; runtime/cuda/cuda_memory.h has those sources).
//
//   CachingAllocator gpu("cuda:0", Device::Cuda(0), MemoryTier::kDevice, /*ledger=*/nullptr,
//                        std::make_unique<CudaMallocSource>(0));
//   STRATA_ASSIGN_OR_RETURN(Allocation a, gpu.Allocate(3 << 20));  // from the source
//   a.Reset();                                                      // kept in the cache
//   STRATA_ASSIGN_OR_RETURN(Allocation b, gpu.Allocate(3 << 20));  // the same block again
//   gpu.reserved_bytes();                                           // what the source holds
//
// Accounting is every allocator's (Allocator::usage and the tier's MemoryLedger count the bytes
// asked for, so the memory plan is checked against what the program uses); what the cache holds
// beyond that is reserved_bytes() - usage().in_use. Blocks are rounded to a size class, 512 B
// below 1 MiB and 2 MiB multiples from there, and a request takes a cached block of exactly its
// class: a program allocates a few large blocks once and the same staging sizes again and again,
// so exact classes reuse what repeats without splitting blocks. When the source refuses a request,
// the cache is handed back to it and the request tried once more. Thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/allocator.h"

namespace strata {

// Raw blocks from somewhere slow. Implementations report failures as Status, naming the device
// and the bytes.
class BlockSource {
 public:
  virtual ~BlockSource() = default;
  // `bytes` > 0; the block is aligned to at least alignment().
  virtual absl::StatusOr<void*> Allocate(size_t bytes) = 0;
  virtual void Free(void* data, size_t bytes) = 0;
  virtual size_t alignment() const = 0;
  virtual std::string Describe() const = 0;  // "cudaMalloc on cuda:0", for messages
};

class CachingAllocator final : public Allocator {
 public:
  CachingAllocator(std::string name, Device device, MemoryTier tier, MemoryLedger* ledger,
                   std::unique_ptr<BlockSource> source);
  ~CachingAllocator() override;  // hands the cache back to the source

  // The size class a request of `bytes` takes from the source.
  static size_t BlockBytes(size_t bytes);
  // Bytes the source holds for this allocator: blocks in use and cached.
  size_t reserved_bytes() const;
  size_t cached_bytes() const;
  // Hands every cached block back to the source.
  void ReleaseCache();
  // Requests the source served, cached blocks included; hits of the cache are the other
  // allocations.
  int64_t source_allocations() const;

 protected:
  absl::StatusOr<void*> AllocateRaw(size_t bytes, size_t alignment, int64_t in_use) override;
  void FreeRaw(void* data, size_t bytes, size_t alignment) override;

 private:
  void ReleaseCacheLocked();

  const std::unique_ptr<BlockSource> source_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  size_t reserved_ = 0;
  size_t cached_ = 0;
  int64_t source_allocations_ = 0;
};

}  // namespace strata
