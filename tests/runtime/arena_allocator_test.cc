// Tests of ArenaAllocator: budget errors, first-fit placement and coalescing checked against a
// shadow model of the blocks handed out, alignment, and the accounting split between the tier
// ledger (the reserved block, once) and the arena's own counters (bytes handed out).
#include "runtime/arena_allocator.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/tensor.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;

uintptr_t Address(const Allocation& a) { return reinterpret_cast<uintptr_t>(a.data()); }

// The arena's first byte: with everything free, a first-fit request of the whole capacity at
// alignment 1 starts there.
uintptr_t ArenaBase(ArenaAllocator& arena) {
  Allocation all = arena.Allocate(arena.capacity(), 1).value();
  return Address(all);
}

TEST(ArenaAllocatorTest, OverflowNamesRequestCapacityAndBytesInUse) {
  MemoryLedger ledger;
  HostAllocator ram(MemoryTier::kHost, &ledger);
  auto arena = ArenaAllocator::Create(ram, 4096, "host budget").value();
  Allocation a = arena->Allocate(3000, 1).value();
  ExpectStatus(arena->Allocate(2000, 1).status(), absl::StatusCode::kResourceExhausted,
               {"arena 'host budget'", "cannot allocate 2000 bytes", "capacity 4096",
                "3000 in use", "1096 free"});
  ExpectStatus(arena->Allocate(5000, 1).status(), absl::StatusCode::kResourceExhausted,
               {"cannot allocate 5000 bytes", "capacity 4096"});
  // Through a tensor, the error also names the tensor.
  ExpectStatus(Tensor::Empty(Shape{1000}, DType::kF32, *arena).status(),
               absl::StatusCode::kResourceExhausted,
               {"f32[1000]", "host budget", "4000 bytes", "capacity 4096", "3000 in use"});
  // Requests so large that adding alignment padding would wrap around.
  // (The free block starts at offset 3000: reaching 4096 alignment takes 1096 bytes of padding.)
  const size_t huge = std::numeric_limits<size_t>::max() - 10;
  ExpectStatus(arena->Allocate(huge, kIoAlignment).status(), absl::StatusCode::kResourceExhausted,
               {absl::StrCat("cannot allocate ", huge, " bytes"), "capacity 4096"});
  // The failures changed nothing.
  EXPECT_EQ(arena->usage().in_use, 3000);
  EXPECT_EQ(arena->usage().live_allocations, 1);
  EXPECT_EQ(arena->usage().total_allocations, 1);
  // Exactly what is left still fits.
  Allocation rest = arena->Allocate(1096, 1).value();
  EXPECT_EQ(arena->LargestFreeBlock(), 0u);
  ExpectStatus(arena->Allocate(1, 1).status(), absl::StatusCode::kResourceExhausted,
               {"cannot allocate 1 bytes", "4096 in use", "(0 free)"});
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
  // 2000 bytes are free, but in two pieces of 1000.
  ExpectStatus(arena->Allocate(1500, 8).status(), absl::StatusCode::kResourceExhausted,
               {"arena 'frag'", "cannot allocate 1500 bytes (alignment 8)", "capacity 3000",
                "1000 in use", "largest free block is 1000 bytes (fragmented)"});
  EXPECT_TRUE(arena->Allocate(1000, 1).ok());
}

TEST(ArenaAllocatorTest, FreedNeighboursCoalesceInEveryOrder) {
  HostAllocator ram;
  std::array<int, 3> order = {0, 1, 2};
  do {
    SCOPED_TRACE(::testing::Message() << "free order " << order[0] << order[1] << order[2]);
    auto arena = ArenaAllocator::Create(ram, 3000, "coalesce").value();
    const uintptr_t base = ArenaBase(*arena);
    std::array<Allocation, 3> blocks;
    for (int i = 0; i < 3; ++i) {
      blocks[i] = arena->Allocate(1000, 1).value();
      EXPECT_EQ(Address(blocks[i]), base + 1000 * i);  // first fit: packed from the start
    }
    std::array<bool, 3> free_now = {false, false, false};
    for (const int i : order) {
      blocks[i].Reset();
      free_now[i] = true;
      // Expected largest free run: the longest stretch of consecutive freed blocks.
      size_t longest = 0, run = 0;
      for (int k = 0; k < 3; ++k) {
        run = free_now[k] ? run + 1000 : 0;
        longest = std::max(longest, run);
      }
      EXPECT_EQ(arena->LargestFreeBlock(), longest);
    }
    Allocation all = arena->Allocate(3000, 1).value();
    EXPECT_EQ(Address(all), base);
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST(ArenaAllocatorTest, RandomSequencesKeepAccountingExactAndNeverOverlap) {
  MemoryLedger ledger;
  HostAllocator ram(MemoryTier::kHost, &ledger);
  constexpr size_t kCapacity = 1 << 16;
  auto arena = ArenaAllocator::Create(ram, kCapacity, "random").value();
  const uintptr_t base = ArenaBase(*arena);
  arena->ResetPeak();  // forget the probe of the base address (it still counts in the total)
  std::mt19937_64 rng(3);
  std::map<uintptr_t, Allocation> live;  // by address: the shadow model of the blocks
  int64_t in_use = 0, peak = 0, total = 1;
  int failures = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    if (live.empty() || rng() % 2 == 0) {
      const size_t bytes = 1 + rng() % 3000;
      const size_t alignment = size_t{1} << (rng() % 10);  // 1 .. 512
      absl::StatusOr<Allocation> a = arena->Allocate(bytes, alignment);
      if (!a.ok()) {
        ASSERT_EQ(a.status().code(), absl::StatusCode::kResourceExhausted) << a.status();
        ++failures;
      } else {
        const uintptr_t p = Address(*a);
        ASSERT_EQ(p % alignment, 0u);
        ASSERT_GE(p, base);
        ASSERT_LE(p + bytes, base + kCapacity);
        auto next = live.lower_bound(p);
        if (next != live.end()) {
          ASSERT_LE(p + bytes, next->first) << "overlaps the next block";
        }
        if (next != live.begin()) {
          const auto prev = std::prev(next);
          ASSERT_LE(prev->first + prev->second.size(), p) << "overlaps the previous block";
        }
        in_use += static_cast<int64_t>(bytes);
        peak = std::max(peak, in_use);
        ++total;
        live.emplace(p, *std::move(a));
      }
    } else {
      auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
      in_use -= static_cast<int64_t>(it->second.size());
      live.erase(it);
    }
    const MemoryUsage u = arena->usage();
    ASSERT_EQ(u.in_use, in_use);
    ASSERT_EQ(u.peak, peak);
    ASSERT_EQ(u.live_allocations, static_cast<int64_t>(live.size()));
    ASSERT_EQ(u.total_allocations, total);
    // The tier ledger only ever sees the reserved block.
    ASSERT_EQ(ledger.usage(MemoryTier::kHost).in_use, static_cast<int64_t>(kCapacity));
    ASSERT_EQ(ledger.usage(MemoryTier::kHost).live_allocations, 1);
    ASSERT_LE(arena->LargestFreeBlock(), kCapacity - static_cast<size_t>(in_use));
  }
  EXPECT_GT(failures, 0) << "the sequence should have filled the arena at times";
  EXPECT_GT(total, 1000);
  live.clear();
  // Every free range coalesced back: the whole capacity is one block again.
  EXPECT_EQ(arena->LargestFreeBlock(), kCapacity);
  Allocation all = arena->Allocate(kCapacity, 1).value();
  EXPECT_EQ(Address(all), base);
}

TEST(ArenaAllocatorTest, AlignmentBeyondTheBlocksOwnIsHonoured) {
  HostAllocator ram;
  auto arena = ArenaAllocator::Create(ram, 1 << 20, "aligned").value();
  const uintptr_t base = ArenaBase(*arena);
  EXPECT_EQ(base % kIoAlignment, 0u);  // the block is reserved page-aligned
  std::vector<Allocation> keep;
  for (size_t alignment = 1; alignment <= (size_t{1} << 16); alignment *= 2) {
    keep.push_back(arena->Allocate(3, 1).value());  // knock the next free offset off alignment
    Allocation a = arena->Allocate(100, alignment).value();
    EXPECT_EQ(Address(a) % alignment, 0u) << alignment;
    EXPECT_EQ(a.alignment(), alignment);
    EXPECT_LE(Address(a) + 100, base + (1 << 20));
    keep.push_back(std::move(a));
  }
  // Padding is not charged to the arena's counters: only the bytes asked for.
  int64_t asked = 0;
  for (const Allocation& a : keep) asked += static_cast<int64_t>(a.size());
  EXPECT_EQ(arena->usage().in_use, asked);
  keep.clear();
  EXPECT_EQ(arena->LargestFreeBlock(), size_t{1} << 20);  // padding went back too
  // An alignment the arena cannot satisfy at all.
  auto small = ArenaAllocator::Create(ram, 4096, "small").value();
  Allocation first = small->Allocate(1, 1).value();
  ExpectStatus(small->Allocate(8, size_t{1} << 20).status(), absl::StatusCode::kResourceExhausted,
               {"arena 'small'", "alignment 1048576"});
}

TEST(ArenaAllocatorTest, TheTierLedgerSeesTheBlockOnce) {
  MemoryLedger ledger;
  HostAllocator ram(MemoryTier::kHost, &ledger, "pinned");
  {
    auto arena = ArenaAllocator::Create(ram, 10000, "budget").value();
    EXPECT_EQ(arena->name(), "budget");
    EXPECT_EQ(arena->capacity(), 10000u);
    EXPECT_EQ(arena->tier(), MemoryTier::kHost);
    EXPECT_EQ(arena->device(), Device::Cpu());
    EXPECT_EQ(ram.usage().in_use, 10000);
    EXPECT_EQ(ram.usage().live_allocations, 1);
    std::vector<Allocation> blocks;
    for (int i = 0; i < 5; ++i) blocks.push_back(arena->Allocate(1000 + i).value());
    EXPECT_EQ(blocks[2].tier(), MemoryTier::kHost);
    EXPECT_EQ(blocks[2].allocator(), arena.get());
    const MemoryUsage tier = ledger.usage(MemoryTier::kHost);
    EXPECT_EQ(tier.in_use, 10000);
    EXPECT_EQ(tier.live_allocations, 1);
    EXPECT_EQ(tier.total_allocations, 1);
    EXPECT_EQ(arena->usage().in_use, 5010);
    EXPECT_EQ(arena->usage().live_allocations, 5);
    // Tensors allocate from the arena like from any allocator.
    const Tensor t = Tensor::Zeros(Shape{100, 10}, DType::kF32, *arena).value();
    EXPECT_EQ(arena->usage().in_use, 9010);
    EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 10000);
  }
  // Destroying the arena returns its block.
  EXPECT_EQ(ram.usage().in_use, 0);
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 0);
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).peak, 10000);
}

TEST(ArenaAllocatorTest, CreateErrors) {
  HostAllocator ram(MemoryTier::kHost, nullptr, "ram");
  ExpectStatus(ArenaAllocator::Create(ram, 0, "empty").status(),
               absl::StatusCode::kInvalidArgument, {"arena 'empty'", "capacity must be > 0"});
  // An arena carved out of a smaller arena: the backing allocator's error, with context.
  auto outer = ArenaAllocator::Create(ram, 8192, "outer").value();
  ExpectStatus(ArenaAllocator::Create(*outer, 10000, "inner").status(),
               absl::StatusCode::kResourceExhausted,
               {"arena 'inner'", "reserving 10000 bytes from 'outer'", "capacity 8192"});
  auto inner = ArenaAllocator::Create(*outer, 4096, "inner").value();
  EXPECT_EQ(outer->usage().in_use, 4096);
  Allocation a = inner->Allocate(4096, 1).value();
  EXPECT_EQ(inner->usage().in_use, 4096);
}

TEST(ArenaAllocatorTest, ConcurrentUseKeepsBlocksDisjoint) {
  HostAllocator ram;
  auto arena = ArenaAllocator::Create(ram, 1 << 20, "shared").value();
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::atomic<int> corrupt{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      std::vector<Allocation> mine;
      for (int i = 0; i < 1500; ++i) {
        if (mine.size() < 8 || rng() % 2) {
          absl::StatusOr<Allocation> a = arena->Allocate(1 + rng() % 2000, 16);
          if (!a.ok()) continue;
          // Stamp the block with this thread's id; any overlap shows up as a foreign stamp.
          std::memset(a->data(), t + 1, a->size());
          mine.push_back(*std::move(a));
        } else {
          const size_t k = rng() % mine.size();
          const auto* p = static_cast<const unsigned char*>(mine[k].data());
          for (size_t j = 0; j < mine[k].size(); ++j) {
            if (p[j] != t + 1) ++corrupt;
          }
          mine.erase(mine.begin() + static_cast<long>(k));
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(corrupt, 0);
  EXPECT_EQ(arena->usage().in_use, 0);
  EXPECT_EQ(arena->usage().live_allocations, 0);
  EXPECT_EQ(arena->LargestFreeBlock(), size_t{1} << 20);
}

}  // namespace
}  // namespace strata
