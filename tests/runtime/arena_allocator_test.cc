#include "runtime/arena_allocator.h"

#include <map>
#include <random>

#include "gtest/gtest.h"
#include "runtime/tensor.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;

TEST(ArenaAllocatorTest, OverflowNamesRequestCapacityAndUse) {
  MemoryLedger ledger;
  HostAllocator ram(MemoryTier::kHost, &ledger);
  auto arena = ArenaAllocator::Create(ram, 4096, "host budget").value();
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 4096);  // the block, counted once
  Allocation a = arena->Allocate(3000, 1).value();
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 4096);
  EXPECT_EQ(arena->usage().in_use, 3000);
  ExpectStatus(arena->Allocate(2000, 1).status(), absl::StatusCode::kResourceExhausted,
               {"host budget", "2000 bytes", "capacity 4096", "3000 in use"});
  ExpectStatus(Tensor::Empty(Shape{1000}, DType::kF32, *arena).status(),
               absl::StatusCode::kResourceExhausted, {"f32[1000]", "4000 bytes"});
  ExpectStatus(ArenaAllocator::Create(ram, 0, "empty").status(),
               absl::StatusCode::kInvalidArgument, {"capacity"});
}

TEST(ArenaAllocatorTest, FragmentationIsReportedAsSuch) {
  HostAllocator ram;
  auto arena = ArenaAllocator::Create(ram, 3000, "frag").value();
  Allocation a = arena->Allocate(1000, 1).value();
  Allocation b = arena->Allocate(1000, 1).value();
  Allocation c = arena->Allocate(1000, 1).value();
  a.Reset();
  c.Reset();
  EXPECT_EQ(arena->LargestFreeBlock(), 1000u);
  ExpectStatus(arena->Allocate(1500, 1).status(), absl::StatusCode::kResourceExhausted,
               {"largest free block is 1000", "fragmented"});
}

TEST(ArenaAllocatorTest, RandomSequencesNeverOverlapAndCoalesce) {
  HostAllocator ram;
  constexpr size_t kCapacity = 1 << 16;
  auto arena = ArenaAllocator::Create(ram, kCapacity, "random").value();
  std::mt19937_64 rng(3);
  std::map<uintptr_t, Allocation> live;  // by address, to check overlaps
  int64_t in_use = 0, peak = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    if (live.empty() || rng() % 2 == 0) {
      const size_t bytes = 1 + rng() % 3000;
      const size_t alignment = size_t{1} << (rng() % 9);
      absl::StatusOr<Allocation> a = arena->Allocate(bytes, alignment);
      if (!a.ok()) {
        EXPECT_EQ(a.status().code(), absl::StatusCode::kResourceExhausted);
        continue;
      }
      const uintptr_t p = reinterpret_cast<uintptr_t>(a->data());
      ASSERT_EQ(p % alignment, 0u);
      auto next = live.lower_bound(p);
      if (next != live.end()) {
        ASSERT_LE(p + bytes, next->first) << "overlaps the next block";
      }
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second.size(), p) << "overlaps the previous block";
      }
      in_use += static_cast<int64_t>(bytes);
      peak = std::max(peak, in_use);
      live.emplace(p, *std::move(a));
    } else {
      auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
      in_use -= static_cast<int64_t>(it->second.size());
      live.erase(it);
    }
    ASSERT_EQ(arena->usage().in_use, in_use);
    ASSERT_EQ(arena->usage().peak, peak);
  }
  live.clear();
  // Every free range coalesced back: the whole capacity is one block again.
  EXPECT_EQ(arena->LargestFreeBlock(), kCapacity);
  Allocation all = arena->Allocate(kCapacity, 1).value();
  EXPECT_NE(all.data(), nullptr);
}

}  // namespace
}  // namespace strata
