#include "runtime/caching_allocator.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "runtime/tensor.h"
#include "gtest/gtest.h"

namespace strata {
namespace {

using ::testing::HasSubstr;

// Host blocks with a byte limit, counting what it hands out, as a device's memory would.
struct SourceLog {
  std::map<void*, size_t> live;
  int allocations = 0;
  int frees = 0;
};

class LimitedSource final : public BlockSource {
 public:
  LimitedSource(SourceLog* log, size_t limit) : log_(log), limit_(limit) {}
  ~LimitedSource() override { EXPECT_TRUE(log_->live.empty()) << log_->live.size() << " blocks leaked"; }
  absl::StatusOr<void*> Allocate(size_t bytes) override {
    size_t held = 0;
    for (const auto& [p, n] : log_->live) held += n;
    if (held + bytes > limit_) {
      return absl::ResourceExhaustedError(absl::StrCat("test source: ", bytes, " bytes, ", held,
                                                       " of ", limit_, " held"));
    }
    void* p = std::aligned_alloc(alignment(), bytes);
    log_->live[p] = bytes;
    ++log_->allocations;
    return p;
  }
  void Free(void* data, size_t bytes) override {
    ASSERT_EQ(log_->live.count(data), 1u);
    EXPECT_EQ(log_->live[data], bytes) << "freed with another size than it was allocated with";
    log_->live.erase(data);
    ++log_->frees;
    std::free(data);
  }
  size_t alignment() const override { return 256; }
  std::string Describe() const override { return "the test source"; }

 private:
  SourceLog* log_;
  size_t limit_;
};

struct Fixture {
  explicit Fixture(size_t limit = size_t{64} << 20)
      : allocator("test", Device::Cpu(), MemoryTier::kDevice, &ledger,
                  std::make_unique<LimitedSource>(&log, limit)) {}
  SourceLog log;
  MemoryLedger ledger;
  CachingAllocator allocator;
};

// A tensor of no elements from a device's allocator is still on that device: kernels that check
// where their arguments live take it as the device's.
TEST(CachingAllocatorTest, AnEmptyTensorIsOnTheAllocatorsDevice) {
  SourceLog log;
  MemoryLedger ledger;
  CachingAllocator gpu("gpu", Device::Cuda(0), MemoryTier::kDevice, &ledger,
                       std::make_unique<LimitedSource>(&log, 1 << 20));
  const Tensor empty = Tensor::Empty(Shape{0, 16}, DType::kF32, gpu).value();
  EXPECT_EQ(empty.device(), Device::Cuda(0));
  EXPECT_EQ(empty.storage()->data(), nullptr);
  EXPECT_EQ(log.allocations, 0);
  EXPECT_EQ(gpu.usage().total_allocations, 0);
}

TEST(CachingAllocatorTest, SizeClassesAre512BytesThenTwoMebibytes) {
  EXPECT_EQ(CachingAllocator::BlockBytes(1), 512u);
  EXPECT_EQ(CachingAllocator::BlockBytes(512), 512u);
  EXPECT_EQ(CachingAllocator::BlockBytes(513), 1024u);
  EXPECT_EQ(CachingAllocator::BlockBytes((1 << 20) - 1), size_t{1} << 20);
  EXPECT_EQ(CachingAllocator::BlockBytes(1 << 20), size_t{2} << 20);
  EXPECT_EQ(CachingAllocator::BlockBytes((size_t{2} << 20) + 1), size_t{4} << 20);
  EXPECT_EQ(CachingAllocator::BlockBytes(~size_t{0}), 0u);  // no such block
}

TEST(CachingAllocatorTest, AFreedBlockServesTheNextRequestOfItsClass) {
  Fixture f;
  void* first = nullptr;
  {
    Allocation a = f.allocator.Allocate(3000).value();
    first = a.data();
    std::memset(a.data(), 1, a.size());  // the whole request is usable
    EXPECT_EQ(f.allocator.reserved_bytes(), 3072u);
    EXPECT_EQ(f.allocator.cached_bytes(), 0u);
  }
  EXPECT_EQ(f.allocator.cached_bytes(), 3072u);
  EXPECT_EQ(f.log.frees, 0);
  Allocation b = f.allocator.Allocate(2600).value();  // the same class, 3072
  EXPECT_EQ(b.data(), first);
  EXPECT_EQ(f.log.allocations, 1);
  EXPECT_EQ(f.allocator.source_allocations(), 1);
  EXPECT_EQ(f.allocator.cached_bytes(), 0u);
  Allocation c = f.allocator.Allocate(3100).value();  // another class: the source again
  EXPECT_NE(c.data(), first);
  EXPECT_EQ(f.log.allocations, 2);
  EXPECT_EQ(f.allocator.reserved_bytes(), 3072u + 3584u);
}

TEST(CachingAllocatorTest, AccountsTheBytesAskedForAsEveryAllocatorDoes) {
  Fixture f;
  {
    Allocation a = f.allocator.Allocate(1000).value();
    Allocation b = f.allocator.Allocate(5 << 20).value();
    EXPECT_EQ(f.allocator.usage().in_use, 1000 + (5 << 20));
    EXPECT_EQ(f.ledger.usage(MemoryTier::kDevice).in_use, 1000 + (5 << 20));
    EXPECT_EQ(f.allocator.reserved_bytes(), 1024u + (6u << 20));
  }
  EXPECT_EQ(f.allocator.usage().in_use, 0);
  EXPECT_EQ(f.allocator.usage().peak, 1000 + (5 << 20));
  EXPECT_EQ(f.ledger.usage(MemoryTier::kDevice).in_use, 0);
  EXPECT_EQ(f.allocator.reserved_bytes(), 1024u + (6u << 20));  // still cached
  f.allocator.ReleaseCache();
  EXPECT_EQ(f.allocator.reserved_bytes(), 0u);
  EXPECT_TRUE(f.log.live.empty());
  EXPECT_EQ(f.log.frees, 2);
}

TEST(CachingAllocatorTest, ARefusedRequestReturnsTheCacheAndTriesAgain) {
  Fixture f(size_t{8} << 20);
  { Allocation a = f.allocator.Allocate(5 << 20).value(); }  // 6 MiB cached
  // 4 MiB more does not fit beside the cached 6 MiB; without the cache it does.
  Allocation b = f.allocator.Allocate(3 << 20).value();
  EXPECT_EQ(f.allocator.cached_bytes(), 0u);
  EXPECT_EQ(f.allocator.reserved_bytes(), size_t{4} << 20);
  EXPECT_EQ(f.log.frees, 1);
  // Beyond the source even then: the error names the allocator, the bytes and the source's reason.
  absl::StatusOr<Allocation> c = f.allocator.Allocate(6 << 20);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("allocator 'test': 6291456 bytes with 3145728 in use"));
  EXPECT_THAT(c.status().message(), HasSubstr("test source: 6291456 bytes, 4194304 of 8388608 held"));
  EXPECT_EQ(f.allocator.usage().in_use, 3 << 20);  // nothing changed
}

TEST(CachingAllocatorTest, AlignmentBeyondTheSourcesIsRefusedByName) {
  Fixture f;
  EXPECT_TRUE(f.allocator.Allocate(100, 256).ok());
  absl::StatusOr<Allocation> a = f.allocator.Allocate(100, 4096);
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(),
              HasSubstr("alignment 4096 is more than the 256 that the test source gives"));
}

TEST(CachingAllocatorTest, ManyBlocksOfManySizesComeBackDistinctAndReused) {
  Fixture f;
  std::vector<Allocation> live;
  for (int round = 0; round < 3; ++round) {
    std::set<void*> seen;
    for (size_t bytes : {100u, 600u, 600u, 70000u, 1u << 20, 3u << 20, 100u}) {
      live.push_back(f.allocator.Allocate(bytes).value());
      EXPECT_TRUE(seen.insert(live.back().data()).second) << "one block handed out twice";
      EXPECT_EQ(reinterpret_cast<uintptr_t>(live.back().data()) % 256, 0u);
    }
    live.clear();
  }
  // The second and third rounds came from the cache.
  EXPECT_EQ(f.log.allocations, 7);
}

}  // namespace
}  // namespace strata
