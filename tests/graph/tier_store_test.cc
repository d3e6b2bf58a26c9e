// TierStore's transfers against a plain reference: an update leaves its last writes to NVMe in
// flight, and every later transfer (another update of the same extent, a read, a write) must see
// them land first.
#include "graph/tier_store.h"

#include <filesystem>
#include <vector>

#include "gtest/gtest.h"

namespace strata::graph {
namespace {

namespace fs = std::filesystem;

OffloadOptions NvmeOptions(offload::IoEngineKind engine) {
  OffloadOptions o;
  o.params = MemoryTier::kNvme;
  const fs::path dir = fs::path(::testing::TempDir()) / "tier_store_test";
  fs::create_directories(dir);
  o.io.dir = dir.string();
  o.io.engine = engine;
  o.io.block_size = 16 << 10;  // chunks of 64 KiB: the arrays below span many of them
  return o;
}

// Adds `delta` to every element of the operand, which lives on NVMe.
absl::Status AddOnNvme(TierStore& store, const offload::Extent& e, int64_t n, float delta) {
  TierStore::Operand o;
  o.tier = MemoryTier::kNvme;
  o.extent = e;
  o.mutated = true;
  return store.Update({&o, 1}, n, [&](absl::Span<float* const> chunk, int64_t elems) {
    for (int64_t i = 0; i < elems; ++i) chunk[0][i] += delta;
    return absl::OkStatus();
  });
}

TEST(TierStoreTest, UpdatesReadsAndWritesSeeTheWritesAnUpdateLeftInFlight) {
  for (auto engine : {offload::IoEngineKind::kThreads, offload::IoEngineKind::kAuto}) {
    SCOPED_TRACE(offload::IoEngineKindName(engine));
    MemoryLedger ledger;
    auto store = TierStore::Create(NvmeOptions(engine), &ledger, 0, /*staging=*/true);
    ASSERT_TRUE(store.ok()) << store.status();
    // Two arrays, neither a multiple of a chunk (16 K floats).
    const int64_t n = 100'003, m = 37'001;
    auto a = (*store)->AllocateExtent(n * 4), b = (*store)->AllocateExtent(m * 4);
    ASSERT_TRUE(a.ok() && b.ok());
    std::vector<float> want_a(n), want_b(m);
    for (int64_t i = 0; i < n; ++i) want_a[i] = static_cast<float>(i % 1000);
    for (int64_t i = 0; i < m; ++i) want_b[i] = static_cast<float>(-(i % 777));
    ASSERT_TRUE((*store)->Write(*a, want_a.data(), n * 4).ok());
    ASSERT_TRUE((*store)->Write(*b, want_b.data(), m * 4).ok());
    for (int round = 0; round < 20; ++round) {
      // The same extent twice in a row, then the other one, then a read of the first.
      ASSERT_TRUE(AddOnNvme(**store, *a, n, 1.0f).ok());
      ASSERT_TRUE(AddOnNvme(**store, *a, n, 2.0f).ok());
      ASSERT_TRUE(AddOnNvme(**store, *b, m, 0.5f).ok());
      for (float& x : want_a) x += 3.0f;
      for (float& x : want_b) x += 0.5f;
      std::vector<float> got(n);
      ASSERT_TRUE((*store)->Read(*a, got.data(), n * 4).ok());
      ASSERT_EQ(got, want_a) << "round " << round;
    }
    // A write right after an update of the same extent lands last.
    ASSERT_TRUE(AddOnNvme(**store, *b, m, 1.0f).ok());
    std::vector<float> fresh(m, 7.0f);
    ASSERT_TRUE((*store)->Write(*b, fresh.data(), m * 4).ok());
    std::vector<float> got(m);
    ASSERT_TRUE((*store)->Read(*b, got.data(), m * 4).ok());
    EXPECT_EQ(got, fresh);
  }
}

}  // namespace
}  // namespace strata::graph
