// Tests of the collectives' helpers (shards, options, the byte formula) and of the single-process
// backend: every op of a world of one, tickets, events, and the argument errors every backend
// shares (they are checked before a backend sees the request).
#include <cstdlib>
#include <numeric>
#include <vector>

#include "collectives/comm_options.h"
#include "collectives/communicator.h"
#include "collectives/create_communicator.h"
#include "collectives/shard.h"
#include "collectives/single_process_communicator.h"
#include "gtest/gtest.h"
#include "runtime/stream.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::collectives {
namespace {

using strata::testing::ExpectStatus;

Tensor F32(std::vector<float>& v) {
  return Tensor::Wrap(v.data(), Shape{static_cast<int64_t>(v.size())}, DType::kF32,
                      Device::Cpu());
}
Tensor I32(std::vector<int32_t>& v) {
  return Tensor::Wrap(v.data(), Shape{static_cast<int64_t>(v.size())}, DType::kI32,
                      Device::Cpu());
}

TEST(ShardTest, FirstRanksHoldOneMoreAndRangesTileTheBuffer) {
  EXPECT_EQ(ShardCounts(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(ShardOf(10, 4, 1), (ShardRange{.offset = 3, .count = 3}));
  EXPECT_EQ(ShardOf(10, 4, 3), (ShardRange{.offset = 8, .count = 2}));
  EXPECT_EQ(ShardCounts(2, 3), (std::vector<int64_t>{1, 1, 0}));
  EXPECT_EQ(ShardCounts(0, 3), (std::vector<int64_t>{0, 0, 0}));
  for (int64_t count : {0, 1, 7, 1023, 1000003}) {
    for (int world : {1, 2, 3, 5, 8}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const ShardRange s = ShardOf(count, world, r);
        EXPECT_EQ(s.offset, next) << count << " " << world << " " << r;
        EXPECT_LE(s.count, (count + world - 1) / world);
        EXPECT_GE(s.count, count / world);
        next += s.count;
      }
      EXPECT_EQ(next, count);
    }
  }
}

TEST(RingBytesSentTest, MatchesTheRingVolumeWhenTheWorldDividesTheCount) {
  // S = 4096 f32 = 16384 bytes over N = 4: 2(N-1)/N*S, (N-1)/N*S, (N-1)/N*S, S.
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(RingBytesSent(CommOp::kAllReduce, 4096, {}, 4, 4, r), 2 * 3 * 16384 / 4);
    EXPECT_EQ(RingBytesSent(CommOp::kReduceScatter, 4096, {}, 4, 4, r), 3 * 16384 / 4);
    EXPECT_EQ(RingBytesSent(CommOp::kAllGather, 4096, {}, 4, 4, r), 3 * 16384 / 4);
    EXPECT_EQ(RingBytesSent(CommOp::kBarrier, 4096, {}, 4, 4, r), 0);
  }
  // Broadcast from root 2: the chain 2 -> 3 -> 0 -> 1; rank 1 is last and forwards nothing.
  EXPECT_EQ(RingBytesSent(CommOp::kBroadcast, 4096, {}, 4, 4, 2, /*root=*/2), 16384);
  EXPECT_EQ(RingBytesSent(CommOp::kBroadcast, 4096, {}, 4, 4, 0, /*root=*/2), 16384);
  EXPECT_EQ(RingBytesSent(CommOp::kBroadcast, 4096, {}, 4, 4, 1, /*root=*/2), 0);
  EXPECT_EQ(RingBytesSent(CommOp::kAllReduce, 4096, {}, 4, 1, 0), 0);
}

TEST(RingBytesSentTest, UnevenSplitsSumToTheRingTotalOverRanks) {
  // Summed over ranks every chunk crosses N-1 links per phase, whatever the split.
  const int64_t count = 1000003;
  const std::vector<int64_t> uneven = {5, 0, 999990, 8};
  for (int world : {2, 3, 4}) {
    int64_t all_reduce = 0, reduce_scatter = 0, all_gather = 0, custom = 0;
    for (int r = 0; r < world; ++r) {
      all_reduce += RingBytesSent(CommOp::kAllReduce, count, {}, 4, world, r);
      reduce_scatter += RingBytesSent(CommOp::kReduceScatter, count, {}, 4, world, r);
      all_gather += RingBytesSent(CommOp::kAllGather, count, {}, 4, world, r);
      if (world == 4) custom += RingBytesSent(CommOp::kReduceScatter, count, uneven, 4, world, r);
    }
    EXPECT_EQ(all_reduce, 2 * (world - 1) * count * 4);
    EXPECT_EQ(reduce_scatter, (world - 1) * count * 4);
    EXPECT_EQ(all_gather, (world - 1) * count * 4);
    if (world == 4) {
      EXPECT_EQ(custom, 3 * count * 4);
    }
  }
}

TEST(CommOptionsTest, TimeoutFromOptionsThenEnvironmentThenDefault) {
  unsetenv("STRATA_COMM_TIMEOUT");
  EXPECT_EQ(*ResolveCommTimeout(CommOptions{}), kDefaultCommTimeoutSeconds);
  EXPECT_EQ(*ResolveCommTimeout(CommOptions{.timeout_seconds = 2.5}), 2.5);
  setenv("STRATA_COMM_TIMEOUT", "7", 1);
  EXPECT_EQ(*ResolveCommTimeout(CommOptions{}), 7);
  EXPECT_EQ(*ResolveCommTimeout(CommOptions{.timeout_seconds = 3}), 3);  // the option wins
  setenv("STRATA_COMM_TIMEOUT", "soon", 1);
  ExpectStatus(ResolveCommTimeout(CommOptions{}).status(), absl::StatusCode::kInvalidArgument,
               {"STRATA_COMM_TIMEOUT", "'soon'"});
  setenv("STRATA_COMM_TIMEOUT", "-1", 1);
  ExpectStatus(ResolveCommTimeout(CommOptions{}).status(), absl::StatusCode::kInvalidArgument,
               {"STRATA_COMM_TIMEOUT", "'-1'"});
  unsetenv("STRATA_COMM_TIMEOUT");
  ExpectStatus(ResolveCommTimeout(CommOptions{.timeout_seconds = -4}).status(),
               absl::StatusCode::kInvalidArgument, {"timeout_seconds", "-4"});
}

TEST(CreateCommunicatorTest, OutsideMpirunIsTheSingleProcessBackend) {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    ASSERT_EQ(std::getenv(name), nullptr) << name << " is set: this test runs outside mpirun";
  }
  absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateCommunicator(CommOptions{});
  ASSERT_TRUE(comm.ok()) << comm.status();
  EXPECT_EQ((*comm)->world_size(), 1);
  EXPECT_EQ((*comm)->rank(), 0);
  EXPECT_NE((*comm)->Describe().find("single-process"), std::string::npos);
  ExpectStatus(CreateCommunicator(CommOptions{.timeout_seconds = -1}).status(),
               absl::StatusCode::kInvalidArgument, {"timeout_seconds"});
}

#ifndef STRATA_HAVE_MPI
// A build without MPI (STRATA_WITH_MPI=OFF) started by mpirun would train every rank alone: it
// refuses, naming the option that builds the MPI backend.
TEST(CreateCommunicatorTest, UnderALauncherWithoutMpiIsRefused) {
  ASSERT_EQ(std::getenv("PMI_RANK"), nullptr) << "this test runs outside mpirun";
  setenv("PMI_RANK", "0", 1);
  EXPECT_TRUE(LaunchedUnderMpi());
  const absl::Status status = CreateCommunicator(CommOptions{}).status();
  unsetenv("PMI_RANK");
  ExpectStatus(status, absl::StatusCode::kFailedPrecondition, {"MPI job", "STRATA_WITH_MPI=ON"});
}
#endif

TEST(CreateCommunicatorTest, LocalRankIsTheLaunchersFirstAnswer) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    ASSERT_EQ(std::getenv(name), nullptr) << "this test runs outside a launcher";
  }
  EXPECT_EQ(LocalRank(), 0);
  setenv("SLURM_LOCALID", "3", 1);
  EXPECT_EQ(LocalRank(), 3);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);  // Open MPI's, first
  EXPECT_EQ(LocalRank(), 1);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "one", 1);  // not a number: the next one's
  EXPECT_EQ(LocalRank(), 3);
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  unsetenv("SLURM_LOCALID");
}

TEST(SingleProcessTest, EveryOpIsTheIdentityAndSendsNothing) {
  SingleProcessCommunicator comm;
  for (int64_t n : {0, 1, 7, 1023, 1000003}) {
    std::vector<float> data(n), expected(n), out(n, -1.f);
    std::iota(data.begin(), data.end(), 0.5f);
    expected = data;
    std::vector<int32_t> ints(n, 0);
    std::iota(ints.begin(), ints.end(), -3);
    const std::vector<int32_t> ints_expected = ints;
    std::vector<CommTicket> tickets;
    tickets.push_back(*comm.AllReduce(F32(data)));
    tickets.push_back(*comm.AllReduce(I32(ints)));
    tickets.push_back(*comm.Broadcast(F32(data), 0));
    tickets.push_back(*comm.ReduceScatter(F32(data), F32(out)));
    for (CommTicket t : tickets) ASSERT_TRUE(comm.Wait(t).ok());
    EXPECT_EQ(data, expected);
    EXPECT_EQ(ints, ints_expected);
    EXPECT_EQ(out, expected);
    std::fill(out.begin(), out.end(), -1.f);
    CommTicket t = *comm.AllGather(F32(data), F32(out));
    ASSERT_TRUE(comm.Wait(t).ok());
    EXPECT_EQ(out, expected);
  }
  ASSERT_TRUE(comm.Wait(*comm.Barrier()).ok());
  EXPECT_EQ(comm.bytes_sent(), 0);
}

TEST(SingleProcessTest, BucketedOpsCopyEveryTensor) {
  SingleProcessCommunicator comm;
  std::vector<float> a = {1, 2, 3}, b, c = {4};
  std::vector<Tensor> tensors = {F32(a), F32(b), F32(c)};
  ASSERT_TRUE(comm.Wait(*comm.AllReduceBucketed(tensors)).ok());
  EXPECT_EQ(a, (std::vector<float>{1, 2, 3}));
  std::vector<float> a_out(3), b_out, c_out(1);
  std::vector<Tensor> outs = {F32(a_out), F32(b_out), F32(c_out)};
  ASSERT_TRUE(comm.Wait(*comm.ReduceScatterBucketed(tensors, outs)).ok());
  EXPECT_EQ(a_out, a);
  EXPECT_EQ(c_out, c);
  std::fill(a_out.begin(), a_out.end(), 0.f);
  c_out[0] = 0;
  ASSERT_TRUE(comm.Wait(*comm.AllGatherBucketed(tensors, outs)).ok());
  EXPECT_EQ(a_out, a);
  EXPECT_EQ(c_out, c);
}

// The blocking forms issue and wait in one call: the same results, one ticket each (consumed:
// the next ticket follows), and an argument error as the asynchronous call returns it.
TEST(SingleProcessTest, BlockingCallsCompleteAndReportArgumentErrors) {
  SingleProcessCommunicator comm;
  Communicator::BlockingCalls blocking = comm.Blocking();
  std::vector<float> v = {1, 2, 3}, out(3, 0.f);
  ASSERT_TRUE(blocking.AllReduce(F32(v)).ok());
  ASSERT_TRUE(blocking.AllGather(F32(v), F32(out)).ok());
  EXPECT_EQ(out, v);
  std::fill(out.begin(), out.end(), 0.f);
  ASSERT_TRUE(blocking.ReduceScatter(F32(v), F32(out)).ok());
  EXPECT_EQ(out, v);
  ASSERT_TRUE(blocking.Broadcast(F32(v), 0).ok());
  ASSERT_TRUE(blocking.Barrier().ok());
  std::vector<Tensor> bucket = {F32(v)}, outs = {F32(out)};
  ASSERT_TRUE(blocking.AllReduceBucketed(bucket).ok());
  ASSERT_TRUE(blocking.ReduceScatterBucketed(bucket, outs).ok());
  ASSERT_TRUE(blocking.AllGatherBucketed(bucket, outs).ok());
  const CommTicket next = *comm.Barrier();
  EXPECT_EQ(next, 9u);  // eight blocking calls took tickets 1-8 and waited on each
  ASSERT_TRUE(comm.Wait(next).ok());
  std::vector<float> two(2);
  ExpectStatus(blocking.AllGather(F32(v), F32(two)), absl::StatusCode::kInvalidArgument,
               {"all_gather", "input"});
  ExpectStatus(blocking.Broadcast(F32(v), 3), absl::StatusCode::kInvalidArgument, {"root 3"});
}

TEST(SingleProcessTest, TicketsAreWaitedOnceAndEventsReleaseStreams) {
  SingleProcessCommunicator comm;
  std::vector<float> v = {1, 2};
  const CommTicket t = *comm.AllReduce(F32(v));
  absl::StatusOr<std::unique_ptr<Stream>> stream = Stream::Create(Device::Cpu(), "compute");
  ASSERT_TRUE(stream.ok());
  (*stream)->Wait(comm.CompletionEvent(t));
  bool ran = false;
  (*stream)->Enqueue([&] {
    ran = true;
    return absl::OkStatus();
  });
  ASSERT_TRUE((*stream)->Synchronize().ok());
  EXPECT_TRUE(ran);
  ASSERT_TRUE(comm.Wait(t).ok());
  ExpectStatus(comm.Wait(t), absl::StatusCode::kInvalidArgument,
               {"ticket", "never issued or was already waited on"});
  ExpectStatus(comm.Wait(12345), absl::StatusCode::kInvalidArgument, {"ticket 12345"});
  EXPECT_TRUE(comm.CompletionEvent(t).Query());  // waited on already: complete
}

TEST(CommunicatorTest, ArgumentErrorsNameTheOpTheArgumentAndTheShapes) {
  SingleProcessCommunicator comm;
  std::vector<float> f(6);
  std::vector<int32_t> i(6);
  std::vector<uint8_t> bytes(6);
  const Tensor u8 = Tensor::Wrap(bytes.data(), Shape{6}, DType::kU8, Device::Cpu());
  ExpectStatus(comm.AllReduce(u8).status(), absl::StatusCode::kInvalidArgument,
               {"all_reduce", "data", "f32 or i32", "u8"});
  ExpectStatus(comm.AllReduce(Tensor()).status(), absl::StatusCode::kInvalidArgument,
               {"all_reduce", "data"});
  const Tensor matrix = Tensor::Wrap(f.data(), Shape{2, 3}, DType::kF32, Device::Cpu());
  ExpectStatus(comm.AllReduce(*matrix.Transpose(0, 1)).status(),
               absl::StatusCode::kInvalidArgument, {"all_reduce", "data", "contiguous"});
  const Tensor gpu = Tensor::Wrap(f.data(), Shape{6}, DType::kF32, Device::Cuda(0));
  ExpectStatus(comm.AllReduce(gpu).status(), absl::StatusCode::kInvalidArgument,
               {"all_reduce", "cuda:0", "cpu"});
  ExpectStatus(comm.ReduceScatter(F32(f), I32(i)).status(), absl::StatusCode::kInvalidArgument,
               {"reduce_scatter", "f32[6]", "i32[6]"});
  std::vector<float> small(2);
  ExpectStatus(comm.ReduceScatter(F32(f), F32(small)).status(),
               absl::StatusCode::kInvalidArgument, {"reduce_scatter", "output", "f32[2]", "6"});
  const int64_t wrong[] = {4, 1};
  ExpectStatus(comm.AllGather(F32(small), F32(f), wrong).status(),
               absl::StatusCode::kInvalidArgument, {"all_gather", "rank_counts", "2 entries", "1"});
  const int64_t short_sum[] = {5};
  ExpectStatus(comm.AllGather(F32(small), F32(f), short_sum).status(),
               absl::StatusCode::kInvalidArgument, {"all_gather", "sum to 5", "6 elements"});
  // Overlapping by one element is refused; exactly in place is fine.
  const Tensor whole = F32(f);
  ExpectStatus(comm.AllGather(*whole.Slice(0, 1, 6), *whole.Slice(0, 0, 5),
                              std::vector<int64_t>{5})
                   .status(),
               absl::StatusCode::kInvalidArgument, {"all_gather", "overlap"});
  EXPECT_TRUE(comm.Wait(*comm.ReduceScatter(whole, whole)).ok());
  ExpectStatus(comm.Broadcast(F32(f), 1).status(), absl::StatusCode::kInvalidArgument,
               {"broadcast", "root 1", "world of 1"});
  std::vector<Tensor> mixed = {F32(f), I32(i)};
  ExpectStatus(comm.AllReduceBucketed(mixed).status(), absl::StatusCode::kInvalidArgument,
               {"all_reduce_bucketed", "tensors[1]", "i32"});
  std::vector<Tensor> one = {F32(f)};
  ExpectStatus(comm.ReduceScatterBucketed(one, {}).status(), absl::StatusCode::kInvalidArgument,
               {"reduce_scatter_bucketed", "1 inputs but 0 outputs"});
}

}  // namespace
}  // namespace strata::collectives
