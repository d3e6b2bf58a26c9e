// Tests of NvmeEngine: bit-exact round trips of thousands of random extents for each engine and
// direct mode, reuse of freed extents, request checks, short transfers and errors injected as the
// kernel reports them, the fallbacks and their announcements, directory errors (missing, a file,
// read-only, full), the unlinked swap file, completion events and the kNvme ledger.
#include "offload/nvme_engine.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "offload/pinned_allocator.h"
#include "runtime/allocator.h"
#include "tests/offload/offload_test_util.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::offload {
namespace {

using strata::testing::ExpectStatus;
using testing::FillRandom;
using testing::FindRandomMismatch;
using testing::Mount;
using testing::TempDir;

constexpr int64_t kKiB = 1024, kMiB = 1024 * 1024;

int64_t RoundUp(int64_t bytes) { return (bytes + 4095) / 4096 * 4096; }

IoOptions Options(const std::string& dir, IoEngineKind engine, DirectIo direct) {
  IoOptions o;
  o.dir = dir;
  o.engine = engine;
  o.direct = direct;
  o.block_size = 64 * kKiB;  // 1 MiB extents split into 16 requests
  o.queue_depth = 8;         // fewer than the blocks asked for: requests wait their turn
  o.threads = 3;
  return o;
}

std::unique_ptr<NvmeEngine> OpenOrDie(const IoOptions& o, MemoryLedger* ledger = nullptr) {
  absl::StatusOr<std::unique_ptr<NvmeEngine>> engine = NvmeEngine::Open(o, ledger);
  STRATA_CHECK(engine.ok(), engine.status().ToString());
  return *std::move(engine);
}

// Buffers for IO: 4096-aligned, from the pinned pool, or plain memory where RLIMIT_MEMLOCK
// refuses that much (a user without CAP_IPC_LOCK): the engine works with both.
struct Buffers {
  explicit Buffers(int64_t bytes) : pinned(0, &ledger), plain(MemoryTier::kHost, &ledger) {
    absl::StatusOr<Allocation> a = pinned.Allocate(static_cast<size_t>(bytes), 4096);
    if (!a.ok()) a = plain.Allocate(static_cast<size_t>(bytes), 4096);
    STRATA_CHECK(a.ok(), a.status().ToString());
    block = *std::move(a);
  }
  char* data() const { return static_cast<char*>(block.data()); }
  MemoryLedger ledger;
  PinnedHostAllocator pinned;
  HostAllocator plain;
  Allocation block;
};

struct Config {
  IoEngineKind engine;
  DirectIo direct;
};

// Where the kernel refuses io_uring, the io_uring variants skip (the fallback has its own test).
bool UringRefused(std::string* why) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<NvmeEngine>> engine =
      NvmeEngine::Open(Options(dir.path(), IoEngineKind::kUring, DirectIo::kOff));
  if (engine.ok()) return false;
  *why = std::string(engine.status().message());
  return true;
}

class RoundTripTest : public ::testing::TestWithParam<Config> {
 protected:
  void SetUp() override {
    if (std::string why; GetParam().engine == IoEngineKind::kUring && UringRefused(&why)) {
      GTEST_SKIP() << why;
    }
  }
};

// Thousands of extents of random sizes (4 KiB to 1 MiB: log-uniform up to 64 KiB, one in 20
// log-uniform from 64 KiB to 1 MiB, so that a pass moves ~80 MB; not all multiples of 4096)
// are written with random bytes, up to 32 tickets in flight, half of them freed and reallocated
// (first fit reuses their ranges, which must read zero), and everything read back bit-exact.
TEST_P(RoundTripTest, RandomExtentsReadBackBitExact) {
  const Config c = GetParam();
  TempDir dir;
  MemoryLedger ledger;
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Options(dir.path(), c.engine, c.direct), &ledger);
  if (c.direct == DirectIo::kAuto && !engine->direct()) {
    GTEST_SKIP() << dir.path() << " does not support O_DIRECT";
  }
  ASSERT_EQ(engine->engine(), c.engine);
  constexpr int kExtents = 2000, kInFlight = 32;
  Buffers buffers(kInFlight * kMiB);
  // Registering pins the pages too; where RLIMIT_MEMLOCK refuses, IO goes to unregistered memory.
  if (absl::Status s = engine->RegisterBuffer(buffers.data(), kInFlight * kMiB); !s.ok()) {
    std::fprintf(stderr, "note: buffers not registered: %s\n", std::string(s.message()).c_str());
  }

  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<double> small_log_size(12, 16), large_log_size(16, 20);
  std::vector<Extent> extents;
  std::vector<uint64_t> seeds;  // 0: never written
  int64_t asked = 0;
  for (int i = 0; i < kExtents; ++i) {
    const double log_size = i % 20 == 7 ? large_log_size(rng) : small_log_size(rng);
    int64_t bytes = static_cast<int64_t>(std::exp2(log_size));
    if (i % 3 == 0) bytes = RoundUp(bytes);
    absl::StatusOr<Extent> e = engine->Allocate(bytes);
    ASSERT_TRUE(e.ok()) << e.status();
    ASSERT_EQ(e->offset % 4096, 0);
    extents.push_back(*e);
    seeds.push_back(0);
    asked += bytes;
  }
  ASSERT_EQ(ledger.usage(MemoryTier::kNvme).in_use, asked);

  // Runs over every extent with kInFlight tickets in flight, each in its own buffer slot: `prepare`
  // fills the slot before the request, `done` looks at it after its ticket completed.
  auto sweep = [&](bool write, const std::function<void(int, char*)>& prepare,
                   const std::function<void(int, char*)>& done) {
    std::vector<std::optional<std::pair<int, IoTicket>>> flight(kInFlight);
    auto slot_of = [&](size_t k) { return buffers.data() + static_cast<int64_t>(k) * kMiB; };
    auto retire = [&](size_t k) {
      if (!flight[k]) return;
      const auto [index, ticket] = *flight[k];
      flight[k].reset();
      absl::Status s = engine->Wait(ticket);
      ASSERT_TRUE(s.ok()) << s;
      done(index, slot_of(k));
    };
    for (int i = 0; i < static_cast<int>(extents.size()); ++i) {
      const size_t k = static_cast<size_t>(i % kInFlight);
      retire(k);
      prepare(i, slot_of(k));
      const Extent& e = extents[static_cast<size_t>(i)];
      absl::StatusOr<IoTicket> t = write ? engine->Write(e, 0, slot_of(k), RoundUp(e.bytes))
                                         : engine->Read(e, 0, slot_of(k), RoundUp(e.bytes));
      ASSERT_TRUE(t.ok()) << t.status();
      flight[k] = std::make_pair(i, *t);
    }
    for (size_t k = 0; k < flight.size(); ++k) retire(k);
  };
  auto write_all = [&](uint64_t round) {
    sweep(/*write=*/true,
          [&](int i, char* slot) {
            seeds[static_cast<size_t>(i)] = round * 100000 + static_cast<uint64_t>(i) + 1;
            FillRandom(slot, RoundUp(extents[static_cast<size_t>(i)].bytes),
                       seeds[static_cast<size_t>(i)]);
          },
          [](int, char*) {});
  };
  auto check_all = [&] {
    sweep(/*write=*/false,
          [&](int i, char* slot) {
            std::memset(slot, 0xAB, RoundUp(extents[static_cast<size_t>(i)].bytes));
          },
          [&](int i, char* slot) {
            const int64_t n = RoundUp(extents[static_cast<size_t>(i)].bytes);
            const uint64_t seed = seeds[static_cast<size_t>(i)];
            if (seed == 0) {
              const std::vector<char> zeros(static_cast<size_t>(n), 0);
              ASSERT_EQ(std::memcmp(slot, zeros.data(), static_cast<size_t>(n)), 0)
                  << "extent " << i << " was never written and must read zero";
            } else {
              ASSERT_EQ(FindRandomMismatch(slot, n, seed), -1) << "extent " << i;
            }
          });
  };
  write_all(1);
  check_all();
  // Free every other extent and allocate the same sizes again: first fit hands the freed ranges
  // out again, and they must read zero before they are written.
  int reused = 0;
  for (size_t i = 0; i < extents.size(); i += 2) {
    const int64_t bytes = extents[i].bytes;
    engine->Free(extents[i]);
    asked -= bytes;
  }
  for (size_t i = 0; i < extents.size(); i += 2) {
    absl::StatusOr<Extent> e = engine->Allocate(extents[i].bytes);
    ASSERT_TRUE(e.ok()) << e.status();
    reused += e->offset == extents[i].offset;
    extents[i] = *e;
    seeds[i] = 0;
    asked += e->bytes;
  }
  EXPECT_EQ(reused, kExtents / 2) << "first fit reallocates the same sizes in place";
  ASSERT_EQ(ledger.usage(MemoryTier::kNvme).in_use, asked);
  check_all();
  write_all(2);
  check_all();
  const IoStats stats = engine->stats();
  int64_t total = 0;
  for (const Extent& e : extents) total += RoundUp(e.bytes);
  EXPECT_EQ(stats.bytes_read, 3 * total);
  EXPECT_GT(stats.requests, 6 * kExtents);
  EXPECT_EQ(stats.resubmitted, 0);
  engine.reset();
  EXPECT_EQ(ledger.usage(MemoryTier::kNvme).in_use, 0) << "the engine returns what it held";
}

INSTANTIATE_TEST_SUITE_P(EnginesAndDirect, RoundTripTest,
                         ::testing::Values(Config{IoEngineKind::kUring, DirectIo::kAuto},
                                           Config{IoEngineKind::kUring, DirectIo::kOff},
                                           Config{IoEngineKind::kThreads, DirectIo::kAuto},
                                           Config{IoEngineKind::kThreads, DirectIo::kOff}),
                         [](const ::testing::TestParamInfo<Config>& info) {
                           return absl::StrCat(
                               info.param.engine == IoEngineKind::kUring ? "Uring" : "Threads",
                               info.param.direct == DirectIo::kOff ? "Buffered" : "Direct");
                         });

class EngineTest : public ::testing::TestWithParam<IoEngineKind> {
 protected:
  void SetUp() override {
    if (std::string why; GetParam() == IoEngineKind::kUring && UringRefused(&why)) {
      GTEST_SKIP() << why;
    }
  }
  IoOptions Opts() const { return Options(dir_.path(), GetParam(), DirectIo::kAuto); }
  TempDir dir_;
};

TEST_P(EngineTest, RefusesUnalignedAndOutOfExtentRequests) {
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Opts());
  Buffers buffers(64 * kKiB);
  absl::StatusOr<Extent> e = engine->Allocate(10000);  // 12288 reserved
  ASSERT_TRUE(e.ok());
  ExpectStatus(engine->Read(*e, 0, buffers.data() + 512, 4096).status(),
               absl::StatusCode::kInvalidArgument, {"read: buffer 0x", "not a multiple of 4096"});
  ExpectStatus(engine->Write(*e, 100, buffers.data(), 4096).status(),
               absl::StatusCode::kInvalidArgument, {"write: offset 100 ", "multiple of 4096"});
  ExpectStatus(engine->Read(*e, 0, buffers.data(), 5000).status(),
               absl::StatusCode::kInvalidArgument, {"read: length 5000 ", "multiple of 4096"});
  ExpectStatus(engine->Read(*e, 0, buffers.data(), 0).status(), absl::StatusCode::kInvalidArgument,
               {"length 0 "});
  ExpectStatus(engine->Read(*e, 8192, buffers.data(), 8192).status(), absl::StatusCode::kOutOfRange,
               {"[8192, 16384) lies outside the extent at", "of 10000 bytes (12288 reserved)"});
  ExpectStatus(engine->Write(*e, -4096, buffers.data(), 4096).status(),
               absl::StatusCode::kInvalidArgument, {"offset -4096"});
  EXPECT_TRUE(engine->Read(*e, 8192, buffers.data(), 4096).ok()) << "the last reserved block";
  const Extent stale = *e;
  engine->Free(*e);
  ExpectStatus(engine->Read(stale, 0, buffers.data(), 4096).status(),
               absl::StatusCode::kInvalidArgument, {"is not allocated in", engine->path()});
  ExpectStatus(engine->Allocate(0).status(), absl::StatusCode::kInvalidArgument,
               {"extent of 0 bytes"});
}

TEST_P(EngineTest, ShortTransfersAreResubmitted) {
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Opts());
  Buffers buffers(2 * kMiB);
  absl::StatusOr<Extent> e = engine->Allocate(kMiB);
  ASSERT_TRUE(e.ok());
  FillRandom(buffers.data(), kMiB, 77);
  // Depth 8 prepares 8 blocks at once: the first 3 go out with half their bytes.
  engine->InjectShortTransfers(3);
  absl::StatusOr<IoTicket> w = engine->Write(*e, 0, buffers.data(), kMiB);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(engine->Wait(*w).ok());
  EXPECT_EQ(engine->stats().resubmitted, 3);
  EXPECT_EQ(engine->stats().bytes_written, kMiB);
  engine->InjectShortTransfers(3);
  char* back = buffers.data() + kMiB;
  absl::StatusOr<IoTicket> r = engine->Read(*e, 0, back, kMiB);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(engine->Wait(*r).ok());
  EXPECT_EQ(engine->stats().resubmitted, 6);
  EXPECT_EQ(engine->stats().bytes_read, kMiB);
  EXPECT_EQ(engine->stats().requests, 32) << "16 blocks each way, resubmissions not counted";
  EXPECT_EQ(FindRandomMismatch(back, kMiB, 77), -1);
}

TEST_P(EngineTest, InjectedErrorsNameFileOffsetLengthAndErrno) {
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Opts());
  Buffers buffers(64 * kKiB);
  absl::StatusOr<Extent> pad = engine->Allocate(8192);
  absl::StatusOr<Extent> e = engine->Allocate(128 * kKiB);
  ASSERT_TRUE(pad.ok() && e.ok());
  ASSERT_EQ(e->offset, 8192);
  engine->InjectError(1, EIO);
  absl::StatusOr<IoTicket> r = engine->Read(*e, 64 * kKiB, buffers.data(), 64 * kKiB);
  ASSERT_TRUE(r.ok());
  ExpectStatus(
      engine->Wait(*r), absl::ErrnoToStatusCode(EIO),
      {"read of " + engine->path(), "at offset 73728, length 65536", "Input/output error (EIO)"});
  engine->InjectError(1, ENOSPC);
  absl::StatusOr<IoTicket> w = engine->Write(*e, 0, buffers.data(), 64 * kKiB);
  ASSERT_TRUE(w.ok());
  ExpectStatus(engine->Wait(*w), absl::StatusCode::kResourceExhausted,
               {"write of " + engine->path(), "at offset 8192, length 65536",
                "No space left on device (ENOSPC)"});
  // A failure leaves the engine usable.
  absl::StatusOr<IoTicket> again = engine->Write(*e, 0, buffers.data(), 64 * kKiB);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(engine->Wait(*again).ok());
  // A failed ticket of many blocks fails once and finishes; the engine drains it.
  engine->InjectError(2, EIO);
  absl::StatusOr<IoTicket> big = engine->Read(*e, 0, buffers.data(), 64 * kKiB);
  ASSERT_TRUE(big.ok());
  ExpectStatus(engine->Wait(*big), absl::ErrnoToStatusCode(EIO), {"Input/output error"});
}

TEST_P(EngineTest, TicketsAreWaitedOnOnce) {
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Opts());
  Buffers buffers(64 * kKiB);
  absl::StatusOr<Extent> e = engine->Allocate(4096);
  absl::StatusOr<IoTicket> t = engine->Write(*e, 0, buffers.data(), 4096);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(engine->Wait(*t).ok());
  ExpectStatus(engine->Wait(*t), absl::StatusCode::kInvalidArgument, {"already waited on"});
  ExpectStatus(engine->Wait(*t + 100), absl::StatusCode::kInvalidArgument, {"never issued"});
}

// A stream that waits on a read's completion event sees the bytes read.
TEST_P(EngineTest, CompletionEventOrdersAStream) {
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Opts());
  Buffers buffers(4 * kMiB);
  absl::StatusOr<Extent> e = engine->Allocate(2 * kMiB);
  FillRandom(buffers.data(), 2 * kMiB, 5);
  absl::StatusOr<IoTicket> w = engine->Write(*e, 0, buffers.data(), 2 * kMiB);
  ASSERT_TRUE(engine->Wait(*w).ok());
  absl::StatusOr<std::unique_ptr<Stream>> compute = Stream::Create(Device::Cpu(), "compute");
  ASSERT_TRUE(compute.ok());
  char* back = buffers.data() + 2 * kMiB;
  std::memset(back, 0, 2 * kMiB);
  absl::StatusOr<IoTicket> r = engine->Read(*e, 0, back, 2 * kMiB);
  ASSERT_TRUE(r.ok());
  (*compute)->Wait(engine->CompletionEvent(*r));
  int64_t mismatch = -2;
  (*compute)->Enqueue([&]() -> absl::Status {
    mismatch = FindRandomMismatch(back, 2 * kMiB, 5);
    return absl::OkStatus();
  });
  ASSERT_TRUE((*compute)->Synchronize().ok());
  EXPECT_EQ(mismatch, -1);
  EXPECT_TRUE(engine->Wait(*r).ok());
  Event late = engine->CompletionEvent(*r);
  EXPECT_TRUE(late.Query()) << "a ticket already waited on has a complete event";
}

// Several threads issue IO on their own extents at once.
TEST_P(EngineTest, ConcurrentSubmitters) {
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Opts());
  constexpr int kThreads = 4, kRounds = 40;
  constexpr int64_t kBytes = 256 * kKiB;
  Buffers buffers(kThreads * 2 * kBytes);
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      char* out = buffers.data() + 2 * t * kBytes;
      char* in = out + kBytes;
      absl::StatusOr<Extent> e = engine->Allocate(kBytes);
      for (int round = 0; round < kRounds && failures[t].empty(); ++round) {
        const uint64_t seed = static_cast<uint64_t>(t * 1000 + round + 1);
        FillRandom(out, kBytes, seed);
        absl::StatusOr<IoTicket> w = engine->Write(*e, 0, out, kBytes);
        absl::Status ws = engine->Wait(*w);
        absl::StatusOr<IoTicket> r = engine->Read(*e, 0, in, kBytes);
        absl::Status rs = engine->Wait(*r);
        if (!ws.ok() || !rs.ok() || FindRandomMismatch(in, kBytes, seed) != -1) {
          failures[t] =
              absl::StrCat("thread ", t, " round ", round, ": ", ws.ToString(), " ", rs.ToString());
        }
      }
      engine->Free(*e);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& f : failures) EXPECT_EQ(f, "");
}

TEST_P(EngineTest, SwapFileIsUnlinkedAndDescribed) {
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Opts());
  EXPECT_EQ(dir_.Entries(), 0) << "the swap file " << engine->path() << " is left in the dir";
  EXPECT_EQ(engine->path().rfind(dir_.path() + "/strata-swap-", 0), 0u) << engine->path();
  const std::string kind = GetParam() == IoEngineKind::kUring ? "io_uring" : "threads (3)";
  EXPECT_EQ(engine->Describe(), absl::StrCat(kind, engine->direct() ? ", O_DIRECT" : ", buffered",
                                             ", block 64 KiB, depth 8, ", dir_.path()));
}

TEST_P(EngineTest, LedgerCountsBytesAskedInNvmeTier) {
  MemoryLedger ledger;
  std::unique_ptr<NvmeEngine> engine = OpenOrDie(Opts(), &ledger);
  absl::StatusOr<Extent> a = engine->Allocate(5000);
  absl::StatusOr<Extent> b = engine->Allocate(3 * kMiB + 1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(ledger.usage(MemoryTier::kNvme).in_use, 5000 + 3 * kMiB + 1);
  EXPECT_EQ(ledger.usage(MemoryTier::kNvme).live_allocations, 2);
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 0);
  engine->Free(*a);
  EXPECT_EQ(ledger.usage(MemoryTier::kNvme).in_use, 3 * kMiB + 1);
  EXPECT_EQ(ledger.usage(MemoryTier::kNvme).peak, 5000 + 3 * kMiB + 1);
  // Freed neighbours merge: three 4 KiB extents freed in any order hold one of 12 KiB.
  absl::StatusOr<Extent> filler = engine->Allocate(8192);  // takes a's freed range
  ASSERT_TRUE(filler.ok());
  EXPECT_EQ(filler->offset, 0) << "first fit: a's freed range";
  absl::StatusOr<Extent> p = engine->Allocate(4096), q = engine->Allocate(4096),
                         r = engine->Allocate(4096), last = engine->Allocate(4096);
  ASSERT_TRUE(p.ok() && q.ok() && r.ok() && last.ok());
  engine->Free(*q);
  engine->Free(*p);
  engine->Free(*r);
  absl::StatusOr<Extent> merged = engine->Allocate(12288);
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(merged->offset, p->offset);
  engine.reset();
  EXPECT_EQ(ledger.usage(MemoryTier::kNvme).in_use, 0);
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineTest,
                         ::testing::Values(IoEngineKind::kUring, IoEngineKind::kThreads),
                         [](const ::testing::TestParamInfo<IoEngineKind>& info) {
                           return info.param == IoEngineKind::kUring ? "Uring" : "Threads";
                         });

// A file system that refuses O_DIRECT (ramfs; tmpfs before Linux 6.6).
TEST(NvmeEngineFallbackTest, DirectRefusedFallsBackOnceOrFailsWhenOn) {
  std::string why;
  std::optional<Mount> ramfs = Mount::Make("ramfs", "", /*read_only=*/false, &why);
  if (!ramfs) GTEST_SKIP() << why;
  internal::ResetFallbackAnnouncementsForTesting();
  IoOptions o = Options(ramfs->path(), IoEngineKind::kAuto, DirectIo::kAuto);
  ::testing::internal::CaptureStderr();
  std::unique_ptr<NvmeEngine> first = OpenOrDie(o);
  std::unique_ptr<NvmeEngine> second = OpenOrDie(o);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(first->direct());
  // Where the kernel refuses io_uring (qemu-user, some containers), that fallback is announced
  // too, once; it is not what this test is about.
  if (std::string why; UringRefused(&why)) {
    const std::string uring = "strata: io_uring refused (";
    const size_t at = err.find(uring), end = err.find('\n', at);
    ASSERT_NE(end, std::string::npos) << err;
    EXPECT_TRUE(absl::EndsWith(err.substr(at, end - at), "); using the thread-pool engine")) << err;
    err.erase(at, end + 1 - at);
  }
  EXPECT_EQ(err, absl::StrCat("strata: ", ramfs->path(),
                              " does not support O_DIRECT (EINVAL); using buffered IO\n"))
      << "announced once";
  // Buffered IO works there.
  Buffers buffers(8192);
  FillRandom(buffers.data(), 4096, 3);
  absl::StatusOr<Extent> e = first->Allocate(4096);
  ASSERT_TRUE(first->Wait(*first->Write(*e, 0, buffers.data(), 4096)).ok());
  ASSERT_TRUE(first->Wait(*first->Read(*e, 0, buffers.data() + 4096, 4096)).ok());
  EXPECT_EQ(FindRandomMismatch(buffers.data() + 4096, 4096, 3), -1);
  o.direct = DirectIo::kOn;
  ExpectStatus(NvmeEngine::Open(o).status(), absl::StatusCode::kInvalidArgument,
               {"io dir '" + ramfs->path() + "' does not support O_DIRECT", "EINVAL"});
}

TEST(NvmeEngineFallbackTest, UringRefusedFallsBackOnceOrFailsWhenAsked) {
  TempDir dir;
  internal::ResetFallbackAnnouncementsForTesting();
  setenv("STRATA_IO_URING_DISABLE", "1", 1);
  IoOptions o = Options(dir.path(), IoEngineKind::kAuto, DirectIo::kAuto);
  ::testing::internal::CaptureStderr();
  absl::StatusOr<std::unique_ptr<NvmeEngine>> first = NvmeEngine::Open(o);
  absl::StatusOr<std::unique_ptr<NvmeEngine>> second = NvmeEngine::Open(o);
  const std::string err = ::testing::internal::GetCapturedStderr();
  o.engine = IoEngineKind::kUring;
  absl::Status refused = NvmeEngine::Open(o).status();
  unsetenv("STRATA_IO_URING_DISABLE");
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ((*first)->engine(), IoEngineKind::kThreads);
  EXPECT_EQ(err,
            "strata: io_uring refused (EPERM: Operation not permitted "
            "[STRATA_IO_URING_DISABLE=1]); using the thread-pool engine\n");
  ExpectStatus(refused, absl::StatusCode::kPermissionDenied,
               {"io engine 'uring': the kernel refused io_uring (EPERM"});
  // Without the variable, io_uring is back (where the kernel allows it).
  if (std::string why; !UringRefused(&why)) {
    EXPECT_EQ(OpenOrDie(o)->engine(), IoEngineKind::kUring);
  }
}

TEST(NvmeEngineDirTest, MissingDirectory) {
  TempDir dir;
  IoOptions o = Options(dir.path() + "/missing", IoEngineKind::kAuto, DirectIo::kAuto);
  ExpectStatus(NvmeEngine::Open(o).status(), absl::StatusCode::kNotFound,
               {"io dir '" + dir.path() + "/missing'", "No such file or directory (ENOENT)"});
}

TEST(NvmeEngineDirTest, FileInsteadOfDirectory) {
  TempDir dir;
  const std::string file = dir.path() + "/file";
  std::ofstream(file) << "x";
  IoOptions o = Options(file, IoEngineKind::kAuto, DirectIo::kAuto);
  ExpectStatus(NvmeEngine::Open(o).status(), absl::StatusCode::kFailedPrecondition,
               {"io dir '" + file + "': not a directory", "ENOTDIR"});
}

TEST(NvmeEngineDirTest, ReadOnlyDirectory) {
  std::string why;
  std::optional<Mount> ro = Mount::Make("tmpfs", "size=1m", /*read_only=*/true, &why);
  if (!ro) GTEST_SKIP() << why << " (chmod cannot stop root)";
  IoOptions o = Options(ro->path(), IoEngineKind::kAuto, DirectIo::kAuto);
  ExpectStatus(NvmeEngine::Open(o).status(), absl::StatusCode::kPermissionDenied,
               {"io dir '" + ro->path() + "': cannot create the swap file",
                "Read-only file system (EROFS)"});
}

TEST(NvmeEngineDirTest, FullFileSystemIsReportedByAllocate) {
  std::string why;
  std::optional<Mount> small = Mount::Make("tmpfs", "size=8m", /*read_only=*/false, &why);
  if (!small) GTEST_SKIP() << why;
  MemoryLedger ledger;
  std::unique_ptr<NvmeEngine> engine =
      OpenOrDie(Options(small->path(), IoEngineKind::kAuto, DirectIo::kAuto), &ledger);
  absl::StatusOr<Extent> fits = engine->Allocate(4 * kMiB);
  ASSERT_TRUE(fits.ok()) << fits.status();
  ExpectStatus(engine->Allocate(6 * kMiB).status(), absl::StatusCode::kResourceExhausted,
               {"cannot reserve 6291456 bytes", "in io dir '" + small->path() + "'",
                "No space left on device (ENOSPC)"});
  EXPECT_EQ(ledger.usage(MemoryTier::kNvme).in_use, 4 * kMiB)
      << "the refused extent is not counted";
  // The space the failed reservation took is given back: a smaller extent still fits.
  absl::StatusOr<Extent> more = engine->Allocate(2 * kMiB);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_EQ(more->offset, 4 * kMiB);
}

}  // namespace
}  // namespace strata::offload
