#include "tests/util/allocation_counter.h"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

#include "tests/util/replace_operator_new.h"

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
void CountAllocation(std::size_t) {
  strata::testing::g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace
STRATA_REPLACE_OPERATOR_NEW(CountAllocation)
#endif
