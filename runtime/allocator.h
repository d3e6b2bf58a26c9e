// Allocators hand out owning, device-tagged blocks of memory and account for every byte.
//
//   HostAllocator ram(MemoryTier::kDevice);                 // CPU build: the compute tier
//   STRATA_ASSIGN_OR_RETURN(Allocation a, ram.Allocate(1 << 20, kIoAlignment));
//   a.data(); a.size(); a.device(); a.tier();               // freed when `a` is destroyed
//   ram.usage().peak;                                        // this allocator's own counters
//
// An Allocation must not outlive its allocator. Allocators are thread-safe. A CUDA allocator
// (device memory, pinned host memory) implements the same two virtual functions; the pointers it
// returns may not be host-addressable, which Device::host_addressable() tells.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/device.h"
#include "runtime/memory_ledger.h"
#include "runtime/memory_tier.h"

namespace strata {

inline constexpr size_t kDefaultAlignment = 64;    // a cache line; enough for any SIMD load
inline constexpr size_t kIoAlignment = 4096;       // O_DIRECT and registered io_uring buffers

class Allocator;

// An owning handle to `size` bytes from an allocator. Move-only.
class Allocation {
 public:
  Allocation() = default;
  Allocation(Allocation&& other) noexcept { *this = std::move(other); }
  Allocation& operator=(Allocation&& other) noexcept;
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
  ~Allocation() { Reset(); }

  void* data() const { return data_; }
  size_t size() const { return size_; }
  size_t alignment() const { return alignment_; }
  Device device() const;
  MemoryTier tier() const;
  Allocator* allocator() const { return allocator_; }
  void Reset();  // frees now

 private:
  friend class Allocator;
  Allocation(Allocator* allocator, void* data, size_t size, size_t alignment)
      : allocator_(allocator), data_(data), size_(size), alignment_(alignment) {}
  // An empty allocation (zero bytes) still says where its tensor lives.
  Allocation(Device device, MemoryTier tier) : empty_device_(device), empty_tier_(tier) {}

  Allocator* allocator_ = nullptr;
  Device empty_device_ = Device::Cpu();
  MemoryTier empty_tier_ = MemoryTier::kDevice;
  void* data_ = nullptr;
  size_t size_ = 0;
  size_t alignment_ = 0;
};

class Allocator {
 public:
  // `ledger` receives every allocation and free for `tier`; null means DefaultMemoryLedger().
  Allocator(std::string name, Device device, MemoryTier tier, MemoryLedger* ledger);
  virtual ~Allocator();

  // `alignment` is a power of two. Zero bytes gives an empty Allocation (data() == nullptr).
  absl::StatusOr<Allocation> Allocate(size_t bytes, size_t alignment = kDefaultAlignment);

  const std::string& name() const { return name_; }
  Device device() const { return device_; }
  MemoryTier tier() const { return tier_; }
  MemoryUsage usage() const;
  void ResetPeak();
  // 0 for an allocator without a budget.
  virtual size_t capacity() const { return 0; }

 protected:
  // `in_use` is this allocator's bytes in use before the request, for error messages.
  virtual absl::StatusOr<void*> AllocateRaw(size_t bytes, size_t alignment, int64_t in_use) = 0;
  virtual void FreeRaw(void* data, size_t bytes, size_t alignment) = 0;

 private:
  friend class Allocation;
  void Free(void* data, size_t bytes, size_t alignment);

  const std::string name_;
  const Device device_;
  const MemoryTier tier_;
  MemoryLedger* const ledger_;
  mutable std::mutex mutex_;
  MemoryUsage usage_;
};

// Plain host memory from the C heap, aligned as asked. No budget. Blocks of 16 MiB or more are
// aligned to 2 MiB and advised onto huge pages (Note [huge pages for large blocks]).
class HostAllocator final : public Allocator {
 public:
  explicit HostAllocator(MemoryTier tier = MemoryTier::kDevice, MemoryLedger* ledger = nullptr,
                         std::string name = "");

 protected:
  absl::StatusOr<void*> AllocateRaw(size_t bytes, size_t alignment, int64_t in_use) override;
  void FreeRaw(void* data, size_t bytes, size_t alignment) override;
};

// A process-wide HostAllocator for the device tier of a CPU build (tests, examples, scratch).
Allocator& DefaultCpuAllocator();

}  // namespace strata
