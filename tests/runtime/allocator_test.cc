// Tests of Allocator / HostAllocator / MemoryLedger: exact accounting against a model kept by the
// test, alignment, zero-size and failing requests, Allocation ownership, thread safety.
#include "runtime/allocator.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

// A request that cannot be met must come back as an error, also under AddressSanitizer (whose
// default is to abort on a huge malloc).
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

namespace strata {
namespace {

using testing::ExpectStatus;

bool Aligned(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

// What one allocator's (or one tier's) counters must read.
struct Model {
  int64_t in_use = 0, peak = 0, live = 0, total = 0;
  void Allocate(int64_t bytes) {
    in_use += bytes;
    peak = std::max(peak, in_use);
    ++live;
    ++total;
  }
  void Free(int64_t bytes) {
    in_use -= bytes;
    --live;
  }
};

void ExpectUsage(const MemoryUsage& u, const Model& m, const char* what) {
  ASSERT_EQ(u.in_use, m.in_use) << what;
  ASSERT_EQ(u.peak, m.peak) << what;
  ASSERT_EQ(u.live_allocations, m.live) << what;
  ASSERT_EQ(u.total_allocations, m.total) << what;
}

TEST(AllocatorTest, AccountingIsExactAfterRandomAllocFree) {
  MemoryLedger ledger;
  // Two allocators share the host tier; one reports the nvme tier; the device tier stays empty.
  HostAllocator host_a(MemoryTier::kHost, &ledger, "host a");
  HostAllocator host_b(MemoryTier::kHost, &ledger, "host b");
  HostAllocator nvme(MemoryTier::kNvme, &ledger);
  Allocator* allocators[3] = {&host_a, &host_b, &nvme};
  const MemoryTier tier_of[3] = {MemoryTier::kHost, MemoryTier::kHost, MemoryTier::kNvme};
  Model per_allocator[3], per_tier[kNumMemoryTiers];

  std::mt19937_64 rng(42);
  struct Live {
    Allocation allocation;
    int owner;
  };
  std::map<int, Live> live;
  int next = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    if (live.empty() || rng() % 3 != 0) {
      const int which = static_cast<int>(rng() % 3);
      const size_t bytes = 1 + rng() % 5000;
      const size_t alignment = size_t{1} << (rng() % 13);  // 1 .. 4096
      Allocation a = allocators[which]->Allocate(bytes, alignment).value();
      ASSERT_TRUE(Aligned(a.data(), alignment)) << alignment;
      ASSERT_EQ(a.size(), bytes);
      ASSERT_EQ(a.alignment(), alignment);
      ASSERT_EQ(a.tier(), tier_of[which]);
      ASSERT_EQ(a.allocator(), allocators[which]);
      std::memset(a.data(), 0xab, bytes);  // the whole block is writable (ASan checks the end)
      per_allocator[which].Allocate(static_cast<int64_t>(bytes));
      per_tier[static_cast<int>(tier_of[which])].Allocate(static_cast<int64_t>(bytes));
      live.emplace(next++, Live{std::move(a), which});
    } else {
      auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
      const int which = it->second.owner;
      const int64_t bytes = static_cast<int64_t>(it->second.allocation.size());
      per_allocator[which].Free(bytes);
      per_tier[static_cast<int>(tier_of[which])].Free(bytes);
      live.erase(it);
    }
    for (int w = 0; w < 3; ++w) ExpectUsage(allocators[w]->usage(), per_allocator[w], "allocator");
    for (const MemoryTier t : kAllMemoryTiers) {
      ExpectUsage(ledger.usage(t), per_tier[static_cast<int>(t)], "tier");
    }
  }
  // Peaks reset to what is in use now, then track from there.
  host_a.ResetPeak();
  ledger.ResetPeak(MemoryTier::kHost);
  per_allocator[0].peak = per_allocator[0].in_use;
  per_tier[static_cast<int>(MemoryTier::kHost)].peak =
      per_tier[static_cast<int>(MemoryTier::kHost)].in_use;
  ExpectUsage(host_a.usage(), per_allocator[0], "after ResetPeak");
  ExpectUsage(ledger.usage(MemoryTier::kHost), per_tier[static_cast<int>(MemoryTier::kHost)],
              "after ResetPeak");
  live.clear();
  for (const Allocator* a : allocators) {
    EXPECT_EQ(a->usage().in_use, 0);
    EXPECT_EQ(a->usage().live_allocations, 0);
  }
  for (const MemoryTier t : kAllMemoryTiers) EXPECT_EQ(ledger.usage(t).in_use, 0);
  EXPECT_EQ(ledger.usage(MemoryTier::kDevice).total_allocations, 0);
}

TEST(AllocatorTest, EveryPowerOfTwoAlignmentHolds) {
  HostAllocator host(MemoryTier::kHost);
  std::vector<Allocation> keep;  // held at once so that addresses differ
  for (size_t alignment = 1; alignment <= (size_t{1} << 16); alignment *= 2) {
    for (const size_t bytes : {size_t{1}, size_t{3}, alignment - 1 + (alignment == 1),
                               alignment, alignment + 1, size_t{10000}}) {
      Allocation a = host.Allocate(bytes, alignment).value();
      EXPECT_TRUE(Aligned(a.data(), alignment)) << bytes << " bytes aligned to " << alignment;
      EXPECT_EQ(a.size(), bytes);
      keep.push_back(std::move(a));
    }
  }
  // The defaults: a cache line, and pages for IO.
  EXPECT_EQ(kDefaultAlignment, 64u);
  EXPECT_EQ(kIoAlignment, 4096u);
  for (int i = 0; i < 20; ++i) {
    Allocation d = host.Allocate(1 + 7 * i).value();
    EXPECT_TRUE(Aligned(d.data(), 64));
    EXPECT_EQ(d.alignment(), kDefaultAlignment);
    Allocation io = host.Allocate(1 + 4095 * i, kIoAlignment).value();
    EXPECT_TRUE(Aligned(io.data(), 4096));
    keep.push_back(std::move(d));
    keep.push_back(std::move(io));
  }
}

// The VmFlags of the mapping in /proc/self/smaps that holds address p ("" when not found).
std::string VmFlagsOf(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < 17) {
      inside = lo <= addr && addr < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

TEST(AllocatorTest, LargeBlocksAreAdvisedOntoHugePages) {
  HostAllocator host(MemoryTier::kHost);
  const Allocation big = host.Allocate(size_t{40} << 20).value();
  EXPECT_TRUE(Aligned(big.data(), size_t{2} << 20));
  EXPECT_EQ(big.size(), size_t{40} << 20);
  EXPECT_EQ(big.alignment(), kDefaultAlignment);  // what was asked, not what was used
  std::memset(big.data(), 1, big.size());
  // "hg": the kernel recorded MADV_HUGEPAGE for the block (whether huge pages were free to back
  // it is up to the kernel).
  const std::string flags = VmFlagsOf(big.data());
  ASSERT_NE(flags, "") << "no mapping in /proc/self/smaps holds the block";
  const bool thp_built = std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good();
  if (thp_built) {
    EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;
  }
  // A small block is left as it was.
  const Allocation small = host.Allocate(1 << 20).value();
  EXPECT_EQ(VmFlagsOf(small.data()).find(" hg"), std::string::npos);
}

TEST(AllocatorTest, ZeroBytesGiveAnEmptyAllocationAndCountNothing) {
  MemoryLedger ledger;
  HostAllocator host(MemoryTier::kHost, &ledger);
  Allocation a = host.Allocate(0).value();
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.allocator(), nullptr);
  EXPECT_EQ(a.tier(), MemoryTier::kHost);  // nothing to free, but still the allocator's place
  EXPECT_EQ(a.device(), Device::Cpu());
  Allocation b = host.Allocate(0, kIoAlignment).value();
  EXPECT_EQ(b.data(), nullptr);
  const MemoryUsage u = host.usage();
  EXPECT_EQ(u.in_use, 0);
  EXPECT_EQ(u.live_allocations, 0);
  EXPECT_EQ(u.total_allocations, 0);
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).total_allocations, 0);
  a.Reset();  // freeing an empty allocation is a no-op
  EXPECT_EQ(host.usage().live_allocations, 0);
}

TEST(AllocatorTest, BadAlignmentIsAnErrorNamingTheAllocator) {
  HostAllocator host(MemoryTier::kHost, nullptr, "staging");
  for (const size_t bad : {size_t{0}, size_t{3}, size_t{48}, size_t{100}, size_t{4097}}) {
    ExpectStatus(host.Allocate(16, bad).status(), absl::StatusCode::kInvalidArgument,
                 {"allocator 'staging'", absl::StrCat("alignment ", bad), "not a power of two"});
  }
  // Checked before the zero-size shortcut.
  ExpectStatus(host.Allocate(0, 6).status(), absl::StatusCode::kInvalidArgument, {"alignment 6"});
  EXPECT_EQ(host.usage().total_allocations, 0);
}

TEST(AllocatorTest, ImpossibleRequestsAreResourceExhausted) {
  MemoryLedger ledger;
  HostAllocator host(MemoryTier::kHost, &ledger, "ram");
  Allocation held = host.Allocate(1000).value();
  const size_t huge = std::numeric_limits<size_t>::max() / 2;
  ExpectStatus(host.Allocate(huge).status(), absl::StatusCode::kResourceExhausted,
               {"allocator 'ram'", absl::StrCat(huge, " bytes"), "1000 bytes in use"});
  // Rounding the size up to the alignment must not wrap around to a tiny block.
  const size_t wraps = std::numeric_limits<size_t>::max() - 10;
  ExpectStatus(host.Allocate(wraps, kIoAlignment).status(), absl::StatusCode::kResourceExhausted,
               {"allocator 'ram'", absl::StrCat(wraps, " bytes")});
  // Failed requests leave no trace in the counters.
  EXPECT_EQ(host.usage().in_use, 1000);
  EXPECT_EQ(host.usage().live_allocations, 1);
  EXPECT_EQ(host.usage().total_allocations, 1);
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 1000);
}

TEST(AllocatorTest, AllocationIsMoveOnlyAndFreesOnce) {
  HostAllocator host;
  Allocation a = host.Allocate(128).value();
  void* p = a.data();
  Allocation b = std::move(a);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(a.allocator(), nullptr);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(host.usage().in_use, 128);
  // Move-assigning over a live allocation frees the old one first.
  Allocation c = host.Allocate(64).value();
  EXPECT_EQ(host.usage().in_use, 192);
  c = std::move(b);
  EXPECT_EQ(host.usage().in_use, 128);
  EXPECT_EQ(host.usage().live_allocations, 1);
  EXPECT_EQ(c.data(), p);
  c = std::move(c);  // self-move keeps it
  EXPECT_EQ(c.data(), p);
  c.Reset();
  EXPECT_EQ(c.data(), nullptr);
  EXPECT_EQ(host.usage().in_use, 0);
  EXPECT_EQ(host.usage().live_allocations, 0);
  c.Reset();  // twice is harmless
  EXPECT_EQ(host.usage().live_allocations, 0);
}

TEST(AllocatorTest, NamesDevicesAndTiers) {
  HostAllocator host(MemoryTier::kHost);
  EXPECT_EQ(host.name(), "host/host");
  EXPECT_EQ(host.device(), Device::Cpu());
  EXPECT_EQ(host.tier(), MemoryTier::kHost);
  EXPECT_EQ(host.capacity(), 0u);  // no budget
  EXPECT_EQ(HostAllocator(MemoryTier::kNvme).name(), "host/nvme");
  EXPECT_EQ(HostAllocator(MemoryTier::kDevice, nullptr, "mine").name(), "mine");
  Allocation a = host.Allocate(8).value();
  EXPECT_EQ(a.device(), Device::Cpu());
  EXPECT_EQ(a.tier(), MemoryTier::kHost);
  // The process-wide allocator is the device tier of a CPU build, reporting to the default ledger.
  Allocator& cpu = DefaultCpuAllocator();
  EXPECT_EQ(&cpu, &DefaultCpuAllocator());
  EXPECT_EQ(cpu.name(), "cpu");
  EXPECT_EQ(cpu.tier(), MemoryTier::kDevice);
  const MemoryUsage before = DefaultMemoryLedger().usage(MemoryTier::kDevice);
  {
    Allocation d = cpu.Allocate(4096).value();
    EXPECT_EQ(DefaultMemoryLedger().usage(MemoryTier::kDevice).in_use, before.in_use + 4096);
  }
  EXPECT_EQ(DefaultMemoryLedger().usage(MemoryTier::kDevice).in_use, before.in_use);
}

TEST(AllocatorTest, ConcurrentAllocationsAreCountedExactly) {
  MemoryLedger ledger;
  HostAllocator host(MemoryTier::kHost, &ledger);
  constexpr int kThreads = 4, kPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&host, t] {
      std::vector<Allocation> mine;
      for (int i = 0; i < kPerThread; ++i) {
        mine.push_back(host.Allocate(1 + (i + t) % 257).value());
        if (i % 3 == 2) mine.erase(mine.begin() + (i % static_cast<int>(mine.size())));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const MemoryUsage u = host.usage();
  EXPECT_EQ(u.in_use, 0);
  EXPECT_EQ(u.live_allocations, 0);
  EXPECT_EQ(u.total_allocations, kThreads * kPerThread);
  EXPECT_GT(u.peak, 0);
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).total_allocations, kThreads * kPerThread);
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 0);
}

TEST(AllocatorDeathTest, DestroyingAnAllocatorWithLiveAllocationsAborts) {
  EXPECT_DEATH(
      {
        auto host = std::make_unique<HostAllocator>(MemoryTier::kHost, nullptr, "leaky");
        new Allocation(host->Allocate(100).value());  // never freed
        host.reset();
      },
      "allocator 'leaky' destroyed with 1 live allocations \\(100 bytes\\)");
}

TEST(AllocatorDeathTest, LedgerRefusesToFreeMoreThanIsInUse) {
  MemoryLedger ledger;
  ledger.RecordAllocate(MemoryTier::kNvme, 10);
  EXPECT_DEATH(ledger.RecordFree(MemoryTier::kNvme, 11),
               "ledger for tier nvme frees 11 bytes with only 10 in use");
}

}  // namespace
}  // namespace strata
