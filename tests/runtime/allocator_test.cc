#include "runtime/allocator.h"

#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;

TEST(AllocatorTest, AccountingIsExactAfterRandomAllocFree) {
  MemoryLedger ledger;
  HostAllocator host(MemoryTier::kHost, &ledger);
  HostAllocator dev(MemoryTier::kDevice, &ledger);
  std::mt19937_64 rng(42);
  std::map<int, Allocation> live;
  // A shadow model of what every counter must read.
  int64_t in_use[2] = {0, 0}, peak[2] = {0, 0}, count[2] = {0, 0};
  Allocator* allocators[2] = {&host, &dev};
  const MemoryTier tiers[2] = {MemoryTier::kHost, MemoryTier::kDevice};
  std::map<int, int> owner;
  int next = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    if (live.empty() || rng() % 3 != 0) {
      const int which = static_cast<int>(rng() % 2);
      const size_t bytes = 1 + rng() % 5000;
      const size_t alignment = size_t{1} << (rng() % 13);  // 1 .. 4096
      Allocation a = allocators[which]->Allocate(bytes, alignment).value();
      ASSERT_EQ(reinterpret_cast<uintptr_t>(a.data()) % alignment, 0u);
      EXPECT_EQ(a.size(), bytes);
      EXPECT_EQ(a.tier(), tiers[which]);
      in_use[which] += static_cast<int64_t>(bytes);
      peak[which] = std::max(peak[which], in_use[which]);
      ++count[which];
      owner[next] = which;
      live.emplace(next++, std::move(a));
    } else {
      auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
      const int which = owner[it->first];
      in_use[which] -= static_cast<int64_t>(it->second.size());
      --count[which];
      live.erase(it);
    }
    for (int w = 0; w < 2; ++w) {
      const MemoryUsage u = allocators[w]->usage();
      ASSERT_EQ(u.in_use, in_use[w]);
      ASSERT_EQ(u.peak, peak[w]);
      ASSERT_EQ(u.live_allocations, count[w]);
      const MemoryUsage l = ledger.usage(tiers[w]);
      ASSERT_EQ(l.in_use, in_use[w]);
      ASSERT_EQ(l.peak, peak[w]);
    }
  }
  live.clear();
  EXPECT_EQ(host.usage().in_use, 0);
  EXPECT_EQ(ledger.usage(MemoryTier::kNvme).total_allocations, 0);
  host.ResetPeak();
  EXPECT_EQ(host.usage().peak, 0);
}

TEST(AllocatorTest, IoAllocationsArePageAligned) {
  HostAllocator host(MemoryTier::kHost);
  for (size_t bytes : {1u, 4095u, 4096u, 10000u}) {
    Allocation a = host.Allocate(bytes, kIoAlignment).value();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 4096, 0u) << bytes;
  }
  Allocation d = host.Allocate(100).value();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(d.data()) % kDefaultAlignment, 0u);
}

TEST(AllocatorTest, ZeroBytesAndBadAlignment) {
  HostAllocator host;
  Allocation a = host.Allocate(0).value();
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(host.usage().live_allocations, 0);
  ExpectStatus(host.Allocate(16, 48).status(), absl::StatusCode::kInvalidArgument,
               {"alignment 48", "power of two"});
}

TEST(AllocatorTest, MovedAllocationFreesOnce) {
  HostAllocator host;
  Allocation a = host.Allocate(128).value();
  Allocation b = std::move(a);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(host.usage().in_use, 128);
  b.Reset();
  EXPECT_EQ(host.usage().in_use, 0);
  EXPECT_EQ(host.usage().live_allocations, 0);
}

}  // namespace
}  // namespace strata
