// The MPI backend on 2 and 3 ranks (ctest runs this binary under mpiexec -n 2 and -n 3): every
// collective against a reference each rank computes itself in double precision (f32) or 64-bit
// integers (i32, wrapped to 32 bits) from data every rank can generate for every other rank;
// sizes 0, 1, 7, 1023, 1M+3 and smaller than the world; uneven and explicit splits, in-place
// shards, bucketed forms; bit-identical results across ranks; bytes sent against the ring formula
// (and summed over ranks, against the closed form 2(N-1)S, (N-1)S); several ops in flight.
//
// Every rank runs every test in the same order, so the collectives match. A failed ASSERT that
// skips a collective on one rank makes the others time out (10 s) and end the job loudly.
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "collectives/create_communicator.h"
#include "collectives/mpi_communicator.h"
#include "gtest/gtest.h"
#include "tests/collectives/mpi_test_main.h"
#include "runtime/stream.h"

namespace strata::collectives {
namespace {

MpiCommunicator* Comm() { return &testing::JobCommunicator(); }  // the job's, from mpi_test_main

constexpr int64_t kSizes[] = {0, 1, 2, 7, 1023, (int64_t{1} << 20) + 3};

// Rank q's element i. Not exactly representable sums, so that order matters in the last bits.
float F(int q, int64_t i) { return 0.37f * (q + 1) + 0.013f * static_cast<float>(i % 101) - 0.5f; }
int32_t I(int q, int64_t i) {
  // Large enough that three ranks overflow 32 bits in some elements: checks the wrap-around.
  return static_cast<int32_t>((q + 1) * 700000000LL + (i % 977) * 131 - 400000000LL);
}
double SumF(int64_t i) {
  double s = 0;
  for (int q = 0; q < Comm()->world_size(); ++q) s += F(q, i);
  return s;
}
int32_t SumI(int64_t i) {
  int64_t s = 0;
  for (int q = 0; q < Comm()->world_size(); ++q) s += I(q, i);
  return static_cast<int32_t>(static_cast<uint32_t>(s));
}

Tensor F32(std::vector<float>& v) {
  return Tensor::Wrap(v.data(), Shape{static_cast<int64_t>(v.size())}, DType::kF32, Device::Cpu());
}
Tensor I32(std::vector<int32_t>& v) {
  return Tensor::Wrap(v.data(), Shape{static_cast<int64_t>(v.size())}, DType::kI32, Device::Cpu());
}

void ExpectNearSum(const std::vector<float>& got, int64_t first, const char* what) {
  for (size_t k = 0; k < got.size(); ++k) {
    const double want = SumF(first + static_cast<int64_t>(k));
    ASSERT_NEAR(got[k], want, 1e-6 * Comm()->world_size() * (1 + std::abs(want)))
        << what << " element " << first + static_cast<int64_t>(k);
  }
}

// True on every rank when `bytes` are identical on every rank.
bool SameOnEveryRank(const void* data, size_t bytes) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t k = 0; k < bytes; ++k) h = (h ^ p[k]) * 1099511628211ULL;
  uint64_t lo = h, hi = h;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

int64_t SumOverRanks(int64_t x) {
  MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  return x;
}

TEST(MpiCommunicatorTest, RankAndSizeComeFromMpi) {
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(Comm()->rank(), rank);
  EXPECT_EQ(Comm()->world_size(), size);
  EXPECT_GE(size, 2);
  EXPECT_EQ(Comm()->timeout_seconds(), 20);  // mpi_test_main's
  EXPECT_TRUE(LaunchedUnderMpi());
}

TEST(MpiCommunicatorTest, AllReduceF32MatchesDoubleSumsAndIsIdenticalOnEveryRank) {
  const int n = Comm()->world_size(), r = Comm()->rank();
  for (int64_t count : kSizes) {
    std::vector<float> v(count);
    for (int64_t i = 0; i < count; ++i) v[i] = F(r, i);
    const int64_t before = Comm()->bytes_sent();
    absl::StatusOr<CommTicket> t = Comm()->AllReduce(F32(v));
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE(Comm()->Wait(*t).ok());
    ExpectNearSum(v, 0, "all_reduce");
    EXPECT_TRUE(SameOnEveryRank(v.data(), v.size() * 4)) << count;
    const int64_t sent = Comm()->bytes_sent() - before;
    EXPECT_EQ(sent, RingBytesSent(CommOp::kAllReduce, count, {}, 4, n, r));
    EXPECT_EQ(SumOverRanks(sent), 2 * (n - 1) * count * 4) << count;
    if (count % n == 0) {
      EXPECT_EQ(sent, 2 * (n - 1) * count / n * 4);
    }
  }
}

TEST(MpiCommunicatorTest, AllReduceI32WrapsAsTwosComplement) {
  const int r = Comm()->rank();
  for (int64_t count : kSizes) {
    std::vector<int32_t> v(count);
    for (int64_t i = 0; i < count; ++i) v[i] = I(r, i);
    ASSERT_TRUE(Comm()->Wait(*Comm()->AllReduce(I32(v))).ok());
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(v[i], SumI(i)) << count << " " << i;
  }
}

TEST(MpiCommunicatorTest, ReduceScatterDefaultSplitExplicitSplitAndInPlace) {
  const int n = Comm()->world_size(), r = Comm()->rank();
  for (int64_t count : kSizes) {
    std::vector<float> in(count);
    for (int64_t i = 0; i < count; ++i) in[i] = F(r, i);
    const ShardRange mine = ShardOf(count, n, r);
    std::vector<float> out(mine.count, -7.f);
    const int64_t before = Comm()->bytes_sent();
    ASSERT_TRUE(Comm()->Wait(*Comm()->ReduceScatter(F32(in), F32(out))).ok());
    ExpectNearSum(out, mine.offset, "reduce_scatter");
    const int64_t sent = Comm()->bytes_sent() - before;
    EXPECT_EQ(sent, (count - mine.count) * 4);
    EXPECT_EQ(SumOverRanks(sent), (n - 1) * count * 4);

    // In place: the output is this rank's own range of the input.
    ASSERT_TRUE(Comm()->Wait(*Comm()->ReduceScatter(F32(in), *F32(in).Slice(0, mine.offset,
                                                                        mine.offset + mine.count)))
                    .ok());
    std::vector<float> shard(in.begin() + mine.offset, in.begin() + mine.offset + mine.count);
    ExpectNearSum(shard, mine.offset, "in-place reduce_scatter");
  }
  // Explicit, uneven counts: the last rank takes most, rank 0 none.
  const int64_t count = 1000;
  std::vector<int64_t> counts(n, 3);
  counts[0] = 0;
  counts[n - 1] = count - 3 * (n - 2);
  std::vector<int32_t> in(count);
  for (int64_t i = 0; i < count; ++i) in[i] = I(r, i);
  std::vector<int32_t> out(counts[r]);
  ASSERT_TRUE(Comm()->Wait(*Comm()->ReduceScatter(I32(in), I32(out), counts)).ok());
  int64_t offset = 0;
  for (int q = 0; q < r; ++q) offset += counts[q];
  for (int64_t k = 0; k < counts[r]; ++k) ASSERT_EQ(out[k], SumI(offset + k));
}

TEST(MpiCommunicatorTest, AllGatherDefaultSplitExplicitSplitAndInPlace) {
  const int n = Comm()->world_size(), r = Comm()->rank();
  for (int64_t count : kSizes) {
    const ShardRange mine = ShardOf(count, n, r);
    std::vector<float> in(mine.count);
    for (int64_t k = 0; k < mine.count; ++k) in[k] = F(r, mine.offset + k);
    std::vector<float> out(count, -7.f);
    const int64_t before = Comm()->bytes_sent();
    ASSERT_TRUE(Comm()->Wait(*Comm()->AllGather(F32(in), F32(out))).ok());
    for (int q = 0; q < n; ++q) {
      const ShardRange s = ShardOf(count, n, q);
      for (int64_t k = 0; k < s.count; ++k) ASSERT_EQ(out[s.offset + k], F(q, s.offset + k));
    }
    const int64_t sent = Comm()->bytes_sent() - before;
    EXPECT_EQ(sent, (count - ShardOf(count, n, (r + 1) % n).count) * 4);
    EXPECT_EQ(SumOverRanks(sent), (n - 1) * count * 4);

    std::vector<float> whole(count, -7.f);
    std::copy(in.begin(), in.end(), whole.begin() + mine.offset);
    ASSERT_TRUE(
        Comm()->Wait(*Comm()->AllGather(*F32(whole).Slice(0, mine.offset, mine.offset + mine.count),
                                    F32(whole)))
            .ok());
    EXPECT_EQ(whole, out);
  }
  std::vector<int64_t> counts(n, 0);
  counts[n - 1] = 5;
  counts[0] = 2;
  std::vector<int32_t> in(counts[r]);
  for (int64_t k = 0; k < counts[r]; ++k) in[k] = 100 * r + static_cast<int32_t>(k);
  std::vector<int32_t> out(7, -1);
  ASSERT_TRUE(Comm()->Wait(*Comm()->AllGather(I32(in), I32(out), counts)).ok());
  EXPECT_EQ(out, (std::vector<int32_t>{0, 1, 100 * (n - 1), 100 * (n - 1) + 1,
                                       100 * (n - 1) + 2, 100 * (n - 1) + 3, 100 * (n - 1) + 4}));
}

TEST(MpiCommunicatorTest, BroadcastFromEveryRootAsAChainAndFlat) {
  const int n = Comm()->world_size(), r = Comm()->rank();
  // The job's communicator picks the flat form (mpiexec runs every rank on this node); the chain
  // is what runs across nodes.
  EXPECT_NE(Comm()->Describe().find("flat broadcast"), std::string::npos) << Comm()->Describe();
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> chain = MpiCommunicator::Create(
      CommOptions{.timeout_seconds = 20, .broadcast = BroadcastAlgorithm::kChain},
      MPI_COMM_WORLD);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ((*chain)->Describe().find("flat broadcast"), std::string::npos);
  for (Communicator* comm : {static_cast<Communicator*>(Comm()),
                             static_cast<Communicator*>(chain->get())}) {
    const bool flat = comm == Comm();
    for (int64_t count : {int64_t{0}, int64_t{7}, (int64_t{1} << 20) + 3, int64_t{3} << 20}) {
      for (int root = 0; root < n; ++root) {
        std::vector<float> v(count);
        for (int64_t i = 0; i < count; ++i) v[i] = F(r, i);
        const int64_t before = comm->bytes_sent();
        ASSERT_TRUE(comm->Wait(*comm->Broadcast(F32(v), root)).ok());
        for (int64_t i = 0; i < count; ++i) {
          ASSERT_EQ(v[i], F(root, i)) << (flat ? "flat" : "chain") << " " << root << " " << i;
        }
        const int64_t sent = comm->bytes_sent() - before;
        if (flat) {
          EXPECT_EQ(sent, r == root ? (n - 1) * count * 4 : 0);
        } else {
          EXPECT_EQ(sent, (r - root + n) % n == n - 1 ? 0 : count * 4);
        }
        EXPECT_EQ(SumOverRanks(sent), (n - 1) * count * 4);
      }
    }
  }
}

TEST(MpiCommunicatorTest, BarrierWaitsForTheLastRank) {
  const int n = Comm()->world_size(), r = Comm()->rank();
  const auto start = std::chrono::steady_clock::now();
  if (r == n - 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(Comm()->Wait(*Comm()->Barrier()).ok());
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.25) << "rank " << r << " left the barrier before rank " << n - 1
                          << " entered it";
}

TEST(MpiCommunicatorTest, BucketedOpsMatchTheOneTensorOps) {
  const int n = Comm()->world_size(), r = Comm()->rank();
  const std::vector<int64_t> sizes = {3, 0, 1023, 1, 10, 2};
  std::vector<std::vector<float>> data(sizes.size()), shards(sizes.size()), gathered(sizes.size());
  std::vector<Tensor> tensors, shard_tensors, gathered_tensors;
  int64_t total = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    data[k].resize(sizes[k]);
    // Tensor k's element i is element total + i of one long buffer.
    for (int64_t i = 0; i < sizes[k]; ++i) data[k][i] = F(r, total + i);
    shards[k].assign(ShardOf(sizes[k], n, r).count, -7.f);
    gathered[k].assign(sizes[k], -7.f);
    tensors.push_back(F32(data[k]));
    shard_tensors.push_back(F32(shards[k]));
    gathered_tensors.push_back(F32(gathered[k]));
    total += sizes[k];
  }
  // Reduce-scatter first (the inputs are still this rank's own data).
  int64_t before = Comm()->bytes_sent();
  ASSERT_TRUE(Comm()->Wait(*Comm()->ReduceScatterBucketed(tensors, shard_tensors)).ok());
  EXPECT_EQ(SumOverRanks(Comm()->bytes_sent() - before), (n - 1) * total * 4);
  int64_t first = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    ExpectNearSum(shards[k], first + ShardOf(sizes[k], n, r).offset, "reduce_scatter_bucketed");
    first += sizes[k];
  }
  // All-gather the summed shards back: every tensor is then the full sum.
  ASSERT_TRUE(Comm()->Wait(*Comm()->AllGatherBucketed(shard_tensors, gathered_tensors)).ok());
  first = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    ExpectNearSum(gathered[k], first, "all_gather_bucketed");
    first += sizes[k];
  }
  before = Comm()->bytes_sent();
  ASSERT_TRUE(Comm()->Wait(*Comm()->AllReduceBucketed(tensors)).ok());
  EXPECT_EQ(SumOverRanks(Comm()->bytes_sent() - before), 2 * (n - 1) * total * 4);
  first = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    ExpectNearSum(data[k], first, "all_reduce_bucketed");
    EXPECT_TRUE(SameOnEveryRank(data[k].data(), data[k].size() * 4));
    first += sizes[k];
  }
}

TEST(MpiCommunicatorTest, ManyOpsInFlightCompleteInOrderAndReleaseStreams) {
  const int r = Comm()->rank();
  constexpr int kOps = 6;
  std::vector<std::vector<float>> bufs(kOps, std::vector<float>(4097));
  std::vector<CommTicket> tickets;
  for (int k = 0; k < kOps; ++k) {
    for (int64_t i = 0; i < 4097; ++i) bufs[k][i] = F(r, i + k);
    tickets.push_back(*Comm()->AllReduce(F32(bufs[k])));
  }
  absl::StatusOr<std::unique_ptr<Stream>> stream = Stream::Create(Device::Cpu(), "compute");
  ASSERT_TRUE(stream.ok());
  (*stream)->Wait(Comm()->CompletionEvent(tickets.back()));
  double seen = 0;
  (*stream)->Enqueue([&] {
    seen = bufs.back()[0];  // runs only after the last all-reduce finished
    return absl::OkStatus();
  });
  ASSERT_TRUE((*stream)->Synchronize().ok());
  EXPECT_NEAR(seen, SumF(kOps - 1), 1e-5);
  for (int k = kOps - 1; k >= 0; --k) ASSERT_TRUE(Comm()->Wait(tickets[k]).ok());
  for (int k = 0; k < kOps; ++k) {
    std::vector<float> shifted(bufs[k].begin(), bufs[k].end());
    ExpectNearSum(shifted, k, "in flight");
  }
}

// Polls `event` for up to 10 s: an asynchronous collective must progress on the communication
// thread with nobody waiting on it.
bool CompletesWithoutAWait(const Event& event) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!event.Query()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

TEST(MpiCommunicatorTest, BlockingCallsMatchTheReferenceAndKeepTheOrderOfQueuedOnes) {
  const int n = Comm()->world_size(), r = Comm()->rank();
  Communicator::BlockingCalls blocking = Comm()->Blocking();
  // Each op once, in blocking form, against the reference.
  const int64_t count = 1027;
  std::vector<float> v(count), shard(ShardOf(count, n, r).count), whole(count, -7.f);
  for (int64_t i = 0; i < count; ++i) v[i] = F(r, i);
  ASSERT_TRUE(blocking.ReduceScatter(F32(v), F32(shard)).ok());
  ExpectNearSum(shard, ShardOf(count, n, r).offset, "blocking reduce_scatter");
  ASSERT_TRUE(blocking.AllGather(F32(shard), F32(whole)).ok());
  ExpectNearSum(whole, 0, "blocking all_gather");
  ASSERT_TRUE(blocking.AllReduce(F32(v)).ok());
  ExpectNearSum(v, 0, "blocking all_reduce");
  EXPECT_TRUE(SameOnEveryRank(v.data(), v.size() * 4));
  std::vector<int32_t> root_data(5, r == n - 1 ? 41 : -1);
  ASSERT_TRUE(blocking.Broadcast(I32(root_data), n - 1).ok());
  EXPECT_EQ(root_data, std::vector<int32_t>(5, 41));
  std::vector<float> a(3, F(r, 0)), b(0), c(9, F(r, 1));
  std::vector<Tensor> bucket = {F32(a), F32(b), F32(c)};
  ASSERT_TRUE(blocking.AllReduceBucketed(bucket).ok());
  EXPECT_NEAR(a[2], SumF(0), 1e-5);
  EXPECT_NEAR(c[8], SumF(1), 1e-5);
  ASSERT_TRUE(blocking.Barrier().ok());

  // Asynchronous collectives queued before a blocking one complete before it returns, whichever
  // thread runs them, and in the same order on every rank.
  std::vector<std::vector<float>> queued(3, std::vector<float>((int64_t{1} << 18) + 1));
  std::vector<CommTicket> tickets;
  for (int k = 0; k < 3; ++k) {
    for (size_t i = 0; i < queued[k].size(); ++i) queued[k][i] = F(r, static_cast<int64_t>(i) + k);
    tickets.push_back(*Comm()->AllReduce(F32(queued[k])));
  }
  std::vector<float> last(1, F(r, 5));
  ASSERT_TRUE(blocking.AllReduce(F32(last)).ok());
  EXPECT_NEAR(last[0], SumF(5), 1e-5);
  for (int k = 0; k < 3; ++k) EXPECT_TRUE(Comm()->CompletionEvent(tickets[k]).Query()) << k;
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(Comm()->Wait(tickets[k]).ok());
    ExpectNearSum(std::vector<float>(queued[k].begin(), queued[k].begin() + 64), k, "queued");
  }

  // A blocking call refused by validation leaves later asynchronous calls asynchronous: they
  // progress on the communication thread before anybody waits.
  std::vector<int32_t> wrong(count);  // an f32 shard into an i32 buffer, refused on every rank
  absl::Status refused = blocking.AllGather(F32(shard), I32(wrong));
  EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
  std::vector<float> later(33, F(r, 2));
  const CommTicket t = *Comm()->AllReduce(F32(later));
  EXPECT_TRUE(CompletesWithoutAWait(Comm()->CompletionEvent(t)));
  ASSERT_TRUE(Comm()->Wait(t).ok());
  EXPECT_NEAR(later[32], SumF(2), 1e-5);
}

}  // namespace
}  // namespace strata::collectives
