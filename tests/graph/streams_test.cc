// The Program's streams (graph/streams.h) on hand-made sequences: what Plan derives from the
// completion points, that Run keeps every wait it promises (a node never starts before a node it
// must follow has finished), that the two side streams really run at the same time, and that
// the first error of any stream stops the others and is returned.
#include "graph/streams.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::graph {
namespace {

constexpr int kCompute = static_cast<int>(StreamKind::kCompute);
constexpr int kIo = static_cast<int>(StreamKind::kIo);
constexpr int kComm = static_cast<int>(StreamKind::kComm);

TEST(StreamsPlanTest, NeedsFollowCompletionPoints) {
  // 0 compute, 1 io (done before 3), 2 comm (done before 4), 3 compute, 4 io, 5 compute.
  const std::vector<int> stream_of = {kCompute, kIo, kComm, kCompute, kIo, kCompute};
  const std::vector<int> completion = {-1, 3, 4, -1, 6, -1};
  const Streams::Sequence s = Streams::Plan({0, 1, 2, 3, 4, 5}, stream_of, completion);
  EXPECT_EQ(s.num_compute, 3);
  EXPECT_THAT(s.side[kIo], testing::ElementsAre(1, 4));
  EXPECT_THAT(s.side[kComm], testing::ElementsAre(2));
  EXPECT_THAT(s.compute_before, testing::ElementsAre(0, 1, 1, 1, 2, 2));
  using C = Streams::Counts;
  EXPECT_THAT(s.need, testing::ElementsAre(C{0, 0}, C{0, 0}, C{0, 0}, C{1, 0}, C{1, 1}, C{1, 1}));
}

TEST(StreamsPlanTest, ACompletionThatBindsOneNodeHoldsBackThatNodeAlone) {
  // 0 io (for the gather 1 alone), 1 comm, 2 compute, 3 io (for compute 4 and what follows),
  // 4 compute, 5 compute.
  const std::vector<int> stream_of = {kIo, kComm, kCompute, kIo, kCompute, kCompute};
  const std::vector<int> completion = {1, 6, -1, 4, -1, -1};
  const std::vector<bool> binds_one_node = {true, false, false, false, false, false};
  const Streams::Sequence s =
      Streams::Plan({0, 1, 2, 3, 4, 5}, stream_of, completion, binds_one_node);
  using C = Streams::Counts;
  EXPECT_THAT(s.need, testing::ElementsAre(C{0, 0}, C{1, 0}, C{0, 0}, C{0, 0}, C{2, 0}, C{2, 0}));
  // Without the flag, the compute node after the gather waits for the IO node too.
  const Streams::Sequence every = Streams::Plan({0, 1, 2, 3, 4, 5}, stream_of, completion);
  EXPECT_EQ(every.need[2], (C{1, 0}));
}

TEST(StreamsPlanTest, CompletionOutsideTheSequenceMeansItsEnd) {
  // Entries are instruction indices: 7 completes at 2, which is before it, so at the end; 9 at
  // 40, which is not in the sequence.
  const std::vector<int> stream_of(50, kCompute);
  std::vector<int> so = stream_of, completion(50, -1);
  so[7] = kIo;
  so[9] = kComm;
  completion[7] = 2;
  completion[9] = 40;
  const Streams::Sequence s = Streams::Plan({2, 7, 9, 11}, so, completion);
  for (const Streams::Counts& c : s.need) EXPECT_EQ(c, (Streams::Counts{0, 0}));
}

// Records when each instruction starts and ends, in one global order.
struct Log {
  std::mutex mutex;
  int clock = 0;
  std::vector<int> start = std::vector<int>(16, -1), end = std::vector<int>(16, -1);
  void Mark(std::vector<int>& v, int i) {
    std::lock_guard lock(mutex);
    v[i] = clock++;
  }
};

TEST(StreamsRunTest, EveryWaitIsKept) {
  // 0 compute, 1 comm (slow; its output is read by 3, an io node), 2 compute, 3 io (done
  // before 5), 4 compute, 5 compute, 6 comm (done at the end).
  const std::vector<int> stream_of = {kCompute, kComm, kCompute, kIo, kCompute, kCompute, kComm};
  const std::vector<int> completion = {-1, 3, -1, 5, -1, -1, 7};
  const Streams::Sequence seq = Streams::Plan({0, 1, 2, 3, 4, 5, 6}, stream_of, completion);
  Streams streams;
  for (int round = 0; round < 20; ++round) {
    Log log;
    const std::function<absl::Status(int)> run = [&](int i) {
      log.Mark(log.start, i);
      if (i == 1 || i == 3) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      log.Mark(log.end, i);
      return absl::OkStatus();
    };
    double waited = 0;
    ASSERT_TRUE(streams.Run(seq, run, &waited).ok());
    for (int i = 0; i < 7; ++i) ASSERT_GE(log.end[i], 0) << i;
    EXPECT_LT(log.end[0], log.start[1]);  // a side node follows the compute listed before it
    EXPECT_LT(log.end[2], log.start[3]);
    EXPECT_LT(log.end[1], log.start[3]);  // across side streams: 3 reads what 1 wrote
    EXPECT_LT(log.end[3], log.start[5]);  // compute waits at the completion point
    EXPECT_LT(log.end[5], log.start[6]);
    EXPECT_LT(log.end[0], log.start[2]);  // compute in order
    EXPECT_GE(waited, 0);
  }
}

TEST(StreamsRunTest, SideStreamsOverlap) {
  // The comm node waits until the io node has started: it would time out if the two side
  // streams took turns.
  const std::vector<int> stream_of = {kComm, kIo, kCompute};
  const Streams::Sequence seq = Streams::Plan({0, 1, 2}, stream_of, {3, 3, -1});
  Streams streams;
  std::atomic<bool> io_started{false}, overlapped{false};
  const std::function<absl::Status(int)> run = [&](int i) {
    if (i == 1) io_started = true;
    if (i == 0) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!io_started && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      overlapped = io_started.load();
    }
    return absl::OkStatus();
  };
  ASSERT_TRUE(streams.Run(seq, run, nullptr).ok());
  EXPECT_TRUE(overlapped);
}

TEST(StreamsRunTest, FirstErrorStopsEveryStream) {
  // 1 (io) fails; 3 (comm) must wait for 1, and compute 4 waits for 1: neither runs.
  const std::vector<int> stream_of = {kCompute, kIo, kCompute, kComm, kCompute};
  const Streams::Sequence seq = Streams::Plan({0, 1, 2, 3, 4}, stream_of, {-1, 3, -1, 5, -1});
  Streams streams;
  std::vector<std::atomic<bool>> ran(5);
  const std::function<absl::Status(int)> run = [&](int i) {
    ran[i] = true;
    if (i == 1) return absl::DataLossError("fetch: short read of extent 3");
    return absl::OkStatus();
  };
  const absl::Status s = streams.Run(seq, run, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), testing::HasSubstr("extent 3"));
  EXPECT_FALSE(ran[3]);
  EXPECT_FALSE(ran[4]);
  // The streams are usable again after a failed run.
  const std::function<absl::Status(int)> ok = [](int) { return absl::OkStatus(); };
  EXPECT_TRUE(streams.Run(seq, ok, nullptr).ok());
}

TEST(StreamsRunTest, ComputeErrorIsReturnedAfterTheSideStreamsStop) {
  const std::vector<int> stream_of = {kIo, kCompute, kComm, kCompute};
  const Streams::Sequence seq = Streams::Plan({0, 1, 2, 3}, stream_of, {4, -1, 4, -1});
  Streams streams;
  std::atomic<int> side_runs{0};
  const std::function<absl::Status(int)> run = [&](int i) {
    if (i == 1) return absl::InvalidArgumentError("matmul: shapes [2, 3] and [4, 5]");
    if (i != 3) ++side_runs;
    return absl::OkStatus();
  };
  const absl::Status s = streams.Run(seq, run, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LE(side_runs.load(), 1);  // node 0 may have run; node 2 (after compute 1) never
}

}  // namespace
}  // namespace strata::graph
