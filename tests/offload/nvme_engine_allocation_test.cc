// Issuing and completing IO allocates nothing once the engine has seen as many tickets in flight
// as a program keeps (Note [no allocation per request] in offload/nvme_engine.h), so that a
// Program::step that reads and writes NVMe stays free of heap allocation. Counted with the
// replaced operator new (not under AddressSanitizer).
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "offload/nvme_engine.h"
#include "offload/pinned_allocator.h"
#include "tests/offload/offload_test_util.h"
#include "tests/util/allocation_counter.h"

namespace strata::offload {
namespace {

class NvmeEngineAllocationTest : public ::testing::TestWithParam<IoEngineKind> {};

TEST_P(NvmeEngineAllocationTest, SteadyStateIoAllocatesNothing) {
  if (!strata::testing::AllocationCounter::Supported()) GTEST_SKIP() << "not under ASan";
  testing::TempDir dir;
  IoOptions o;
  o.dir = dir.path();
  o.engine = GetParam();
  o.block_size = 64 << 10;
  o.queue_depth = 4;
  absl::StatusOr<std::unique_ptr<NvmeEngine>> engine = NvmeEngine::Open(o);
  if (!engine.ok() && GetParam() == IoEngineKind::kUring) GTEST_SKIP() << engine.status();
  ASSERT_TRUE(engine.ok()) << engine.status();
  MemoryLedger ledger;
  HostAllocator host(MemoryTier::kHost, &ledger);
  constexpr int kTickets = 24;            // more than the depth: some wait in the engine's ring
  constexpr int64_t kBytes = 256 << 10;   // 4 blocks each
  absl::StatusOr<Allocation> buffer = host.Allocate(kTickets * kBytes, 4096);
  ASSERT_TRUE(buffer.ok());
  char* data = static_cast<char*>(buffer->data());
  std::vector<Extent> extents;
  for (int i = 0; i < kTickets; ++i) extents.push_back(*(*engine)->Allocate(kBytes));
  std::vector<IoTicket> tickets(kTickets);
  int failures = 0;
  auto round = [&](bool write) {
    for (int i = 0; i < kTickets; ++i) {
      char* slot = data + i * kBytes;
      absl::StatusOr<IoTicket> t = write ? (*engine)->Write(extents[i], 0, slot, kBytes)
                                         : (*engine)->Read(extents[i], 0, slot, kBytes);
      failures += !t.ok();
      tickets[i] = t.ok() ? *t : 0;
    }
    for (IoTicket t : tickets) failures += !(*engine)->Wait(t).ok();
  };
  for (int warm = 0; warm < 3; ++warm) round(warm % 2 == 0);
  int64_t allocations;
  {
    strata::testing::AllocationCounter counter;
    for (int r = 0; r < 20; ++r) round(r % 2 == 0);
    allocations = counter.count();
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(allocations, 0) << "heap allocations in 20 rounds of " << kTickets << " tickets";
  for (const Extent& e : extents) (*engine)->Free(e);
}

INSTANTIATE_TEST_SUITE_P(Engines, NvmeEngineAllocationTest,
                         ::testing::Values(IoEngineKind::kUring, IoEngineKind::kThreads),
                         [](const ::testing::TestParamInfo<IoEngineKind>& info) {
                           return info.param == IoEngineKind::kUring ? "Uring" : "Threads";
                         });

}  // namespace
}  // namespace strata::offload
