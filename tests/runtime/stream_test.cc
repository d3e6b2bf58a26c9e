#include "runtime/stream.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::unique_ptr<Stream> MakeStream(const char* name) {
  return Stream::Create(Device::Cpu(), name).value();
}

TEST(StreamTest, TwoStreamsOverlapInTime) {
  auto a = MakeStream("compute");
  auto b = MakeStream("copy");
  Clock::time_point start_a, end_a, start_b, end_b;
  const auto t0 = Clock::now();
  a->Enqueue([&] {
    start_a = Clock::now();
    std::this_thread::sleep_for(milliseconds(150));
    end_a = Clock::now();
    return absl::OkStatus();
  });
  b->Enqueue([&] {
    start_b = Clock::now();
    std::this_thread::sleep_for(milliseconds(150));
    end_b = Clock::now();
    return absl::OkStatus();
  });
  ASSERT_TRUE(a->Synchronize().ok());
  ASSERT_TRUE(b->Synchronize().ok());
  // The two intervals intersect, and together took well under the 300 ms of running in series.
  EXPECT_LT(start_a, end_b);
  EXPECT_LT(start_b, end_a);
  EXPECT_LT(Clock::now() - t0, milliseconds(280));
}

TEST(StreamTest, RunsInOrderWithinAStream) {
  auto s = MakeStream("ordered");
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) {
    s->Enqueue([&order, i] {
      order.push_back(i);
      return absl::OkStatus();
    });
  }
  ASSERT_TRUE(s->Synchronize().ok());
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(StreamTest, EventOrdersWorkAcrossStreams) {
  auto producer = MakeStream("io");
  auto consumer = MakeStream("compute");
  Event ready = Event::Create(Device::Cpu());
  std::atomic<int> value{0};
  int seen = -1;
  producer->Enqueue([&] {
    std::this_thread::sleep_for(milliseconds(100));  // slow, so an unordered read would see 0
    value = 42;
    return absl::OkStatus();
  });
  producer->Record(ready);
  EXPECT_FALSE(ready.Query());
  consumer->Wait(ready);
  consumer->Enqueue([&] {
    seen = value;
    return absl::OkStatus();
  });
  ASSERT_TRUE(consumer->Synchronize().ok());
  EXPECT_EQ(seen, 42);
  EXPECT_TRUE(ready.Query());
  ready.Synchronize();  // already reached: returns at once
}

TEST(StreamTest, FirstErrorIsReportedWithTheStreamNameAndLaterTasksSkipped) {
  auto s = MakeStream("comm");
  bool later_ran = false;
  s->Enqueue([] { return absl::DataLossError("short read of shard 3"); });
  s->Enqueue([] { return absl::InternalError("second error"); });
  s->Enqueue([&] {
    later_ran = true;
    return absl::OkStatus();
  });
  testing::ExpectStatus(s->Synchronize(), absl::StatusCode::kDataLoss,
                        {"stream 'comm'", "short read of shard 3"});
  EXPECT_FALSE(later_ran);
  // The error is cleared: the stream works again.
  s->Enqueue([&] {
    later_ran = true;
    return absl::OkStatus();
  });
  EXPECT_TRUE(s->Synchronize().ok());
  EXPECT_TRUE(later_ran);
}

TEST(StreamTest, DestructionDrainsTheQueue) {
  std::atomic<int> done{0};
  {
    auto s = MakeStream("drain");
    for (int i = 0; i < 10; ++i) {
      s->Enqueue([&] {
        std::this_thread::sleep_for(milliseconds(2));
        ++done;
        return absl::OkStatus();
      });
    }
  }
  EXPECT_EQ(done, 10);
}

TEST(StreamTest, CudaStreamsNeedTheCudaBackend) {
  testing::ExpectStatus(Stream::Create(Device::Cuda(0), "gpu").status(),
                        absl::StatusCode::kUnimplemented, {"cuda:0", "gpu"});
}

}  // namespace
}  // namespace strata
