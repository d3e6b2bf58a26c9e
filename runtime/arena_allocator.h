// A budgeted allocator: one block of `capacity` bytes reserved up front from a backing allocator,
// handed out first-fit and coalesced on free. Asking for more than is left is an error that names
// the request, the capacity and the bytes in use; it never falls back to the backing allocator.
//
//   HostAllocator ram(MemoryTier::kHost);
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ArenaAllocator> arena,
//                           ArenaAllocator::Create(ram, 256 << 20, "host budget"));
//   STRATA_ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(shape, DType::kF32, *arena));
//
// Accounting: the tier's ledger sees the reserved block once (through the backing allocator);
// arena->usage() sees the bytes handed out of it, exactly as requested.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/allocator.h"

namespace strata {

class ArenaAllocator final : public Allocator {
 public:
  static absl::StatusOr<std::unique_ptr<ArenaAllocator>> Create(Allocator& backing,
                                                                size_t capacity,
                                                                std::string name);
  ~ArenaAllocator() override;

  size_t capacity() const override { return capacity_; }
  // Size of the largest block that one Allocate() could get right now.
  size_t LargestFreeBlock() const;

 protected:
  absl::StatusOr<void*> AllocateRaw(size_t bytes, size_t alignment, int64_t in_use) override;
  void FreeRaw(void* data, size_t bytes, size_t alignment) override;

 private:
  struct Extent {
    size_t start;  // offset of the reserved range, before alignment padding
    size_t size;   // bytes reserved, padding included
  };
  ArenaAllocator(Allocation block, size_t capacity, std::string name,
                 std::unique_ptr<MemoryLedger> ledger);

  std::unique_ptr<MemoryLedger> own_ledger_;  // handed-out bytes; the tier ledger has the block
  Allocation block_;
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::map<size_t, size_t> free_;     // offset -> size; disjoint, never adjacent
  std::map<size_t, Extent> in_use_;   // offset handed out -> its reserved range
};

}  // namespace strata
