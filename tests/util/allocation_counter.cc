#include "tests/util/allocation_counter.h"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define STRATA_COUNT_ALLOCATIONS 0
#else
#define STRATA_COUNT_ALLOCATIONS 1
#endif

namespace strata::testing {
namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

AllocationCounter::AllocationCounter() : start_(g_allocations.load()) {}
AllocationCounter::~AllocationCounter() = default;
int64_t AllocationCounter::count() const { return g_allocations.load() - start_; }
bool AllocationCounter::Supported() { return STRATA_COUNT_ALLOCATIONS; }

}  // namespace strata::testing

#if STRATA_COUNT_ALLOCATIONS
namespace {
void* CountedAllocate(std::size_t size, std::size_t alignment) {
  strata::testing::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  void* p = alignment > alignof(std::max_align_t)
                ? std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment)
                : std::malloc(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t size) { return CountedAllocate(size, 0); }
void* operator new[](std::size_t size) { return CountedAllocate(size, 0); }
void* operator new(std::size_t size, std::align_val_t a) { return CountedAllocate(size, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t size, std::align_val_t a) { return CountedAllocate(size, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#endif
