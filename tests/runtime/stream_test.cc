// Tests of CPU streams and events: overlap across streams, order within one, event ordering across
// streams, error reporting, draining on destruction. Timing assertions use generous margins (the
// CI machine has 2 cores and may run under ASan).
#include "runtime/stream.h"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/threading.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using testing::ExpectStatus;

std::unique_ptr<Stream> MakeStream(const char* name) {
  return Stream::Create(Device::Cpu(), name).value();
}

// Runs fn on another thread and fails (then aborts: the streams involved would block their
// destructors) if it has not finished within `limit`. Guards tests that used to deadlock.
void WithDeadline(milliseconds limit, std::function<void()> fn) {
  auto done = std::async(std::launch::async, std::move(fn));
  if (done.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "did not finish within " << limit.count() << " ms (deadlock?)";
    std::fflush(stdout);
    std::abort();
  }
  done.get();
}

TEST(StreamTest, NameAndDevice) {
  auto s = MakeStream("compute");
  EXPECT_EQ(s->name(), "compute");
  EXPECT_EQ(s->device(), Device::Cpu());
  EXPECT_TRUE(s->Synchronize().ok());  // nothing enqueued: returns at once
}

TEST(StreamTest, TwoStreamsOverlapInTime) {
  auto a = MakeStream("compute");
  auto b = MakeStream("copy");
  Clock::time_point start[2], end[2];
  const auto t0 = Clock::now();
  for (int i = 0; i < 2; ++i) {
    (i == 0 ? a : b)->Enqueue([&, i] {
      start[i] = Clock::now();
      std::this_thread::sleep_for(milliseconds(100));
      end[i] = Clock::now();
      return absl::OkStatus();
    });
  }
  ASSERT_TRUE(a->Synchronize().ok());
  ASSERT_TRUE(b->Synchronize().ok());
  const auto elapsed = Clock::now() - t0;
  // Each task ran its 100 ms; the two intervals intersect; together well under 200 ms in series.
  EXPECT_GE(end[0] - start[0], milliseconds(100));
  EXPECT_GE(end[1] - start[1], milliseconds(100));
  EXPECT_LT(start[0], end[1]);
  EXPECT_LT(start[1], end[0]);
  EXPECT_LT(elapsed, milliseconds(180));
}

TEST(StreamTest, EnqueueDoesNotBlockTheHost) {
  auto s = MakeStream("async");
  const auto t0 = Clock::now();
  s->Enqueue([] {
    std::this_thread::sleep_for(milliseconds(100));
    return absl::OkStatus();
  });
  EXPECT_LT(Clock::now() - t0, milliseconds(50));
  ASSERT_TRUE(s->Synchronize().ok());
  EXPECT_GE(Clock::now() - t0, milliseconds(100));
}

TEST(StreamTest, RunsInOrderWithinAStreamOnOneThread) {
  auto s = MakeStream("ordered");
  std::vector<int> order;  // only the stream's worker touches it
  std::vector<std::thread::id> threads;
  for (int i = 0; i < 200; ++i) {
    s->Enqueue([&order, &threads, i] {
      if (i % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      order.push_back(i);
      threads.push_back(std::this_thread::get_id());
      return absl::OkStatus();
    });
  }
  ASSERT_TRUE(s->Synchronize().ok());
  ASSERT_EQ(order.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(order[i], i);
  for (const std::thread::id& id : threads) EXPECT_EQ(id, threads[0]);
  EXPECT_NE(threads[0], std::this_thread::get_id());
}

TEST(StreamTest, ConcurrentEnqueuesKeepEachProducersOrder) {
  auto s = MakeStream("shared");
  constexpr int kProducers = 4, kEach = 500;
  std::vector<std::vector<int>> seen(kProducers);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kEach; ++i) {
        s->Enqueue([&seen, p, i] {
          seen[p].push_back(i);
          return absl::OkStatus();
        });
      }
    });
  }
  for (std::thread& t : producers) t.join();
  ASSERT_TRUE(s->Synchronize().ok());
  for (int p = 0; p < kProducers; ++p) {
    ASSERT_EQ(seen[p].size(), static_cast<size_t>(kEach));
    for (int i = 0; i < kEach; ++i) ASSERT_EQ(seen[p][i], i);
  }
}

TEST(StreamTest, EventOrdersWorkAcrossStreams) {
  auto producer = MakeStream("io");
  auto consumer = MakeStream("compute");
  Event ready = Event::Create(Device::Cpu());
  EXPECT_EQ(ready.device(), Device::Cpu());
  EXPECT_TRUE(ready.Query());  // never recorded: nothing to wait for
  std::atomic<int> value{0};
  int seen = -1;
  Clock::time_point produced, consumed;
  producer->Enqueue([&] {
    std::this_thread::sleep_for(milliseconds(100));  // slow, so an unordered read would see 0
    value = 42;
    produced = Clock::now();
    return absl::OkStatus();
  });
  producer->Record(ready);
  EXPECT_FALSE(ready.Query());
  consumer->Wait(ready);
  consumer->Enqueue([&] {
    consumed = Clock::now();
    seen = value;
    return absl::OkStatus();
  });
  ASSERT_TRUE(consumer->Synchronize().ok());
  EXPECT_EQ(seen, 42);
  EXPECT_LE(produced, consumed);
  EXPECT_TRUE(ready.Query());
  ready.Synchronize();  // already reached: returns at once
  ASSERT_TRUE(producer->Synchronize().ok());
}

TEST(StreamTest, WaitOnlyCoversRecordsMadeBeforeIt) {
  auto a = MakeStream("a");
  auto b = MakeStream("b");
  Event e = Event::Create(Device::Cpu());
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  a->Record(e);
  ASSERT_TRUE(a->Synchronize().ok());
  ASSERT_TRUE(e.Query());
  b->Wait(e);  // the point already reached: b must not wait for what a does next
  std::atomic<bool> b_ran{false};
  b->Enqueue([&] {
    b_ran = true;
    return absl::OkStatus();
  });
  a->Enqueue([released] {
    released.wait();  // blocks a until the test releases it
    return absl::OkStatus();
  });
  a->Record(e);  // re-recording moves the point
  EXPECT_FALSE(e.Query());
  ASSERT_TRUE(b->Synchronize().ok());
  EXPECT_TRUE(b_ran);
  EXPECT_FALSE(e.Query());
  release.set_value();
  e.Synchronize();
  EXPECT_TRUE(e.Query());
  ASSERT_TRUE(a->Synchronize().ok());
}

TEST(StreamTest, EventSynchronizeBlocksTheHostUntilTheRecordedPoint) {
  auto s = MakeStream("io");
  Event e = Event::Create(Device::Cpu());
  std::atomic<bool> done{false};
  const auto t0 = Clock::now();
  s->Enqueue([&] {
    std::this_thread::sleep_for(milliseconds(100));
    done = true;
    return absl::OkStatus();
  });
  s->Record(e);
  // Work after the record does not delay the event.
  s->Enqueue([] {
    std::this_thread::sleep_for(milliseconds(300));
    return absl::OkStatus();
  });
  e.Synchronize();
  const auto waited = Clock::now() - t0;
  EXPECT_TRUE(done);
  EXPECT_GE(waited, milliseconds(100));
  EXPECT_LT(waited, milliseconds(350));
  EXPECT_TRUE(e.Query());
  ASSERT_TRUE(s->Synchronize().ok());
}

TEST(StreamTest, PingPongBetweenTwoStreams) {
  auto a = MakeStream("a");
  auto b = MakeStream("b");
  std::vector<int> log;  // appended in turn by a and b, ordered by events only
  std::mutex mutex;
  auto append = [&](int v) {
    return [&, v] {
      std::lock_guard lock(mutex);
      log.push_back(v);
      return absl::OkStatus();
    };
  };
  for (int round = 0; round < 20; ++round) {
    Event a_done = Event::Create(Device::Cpu());
    Event b_done = Event::Create(Device::Cpu());
    a->Enqueue(append(2 * round));
    a->Record(a_done);
    b->Wait(a_done);
    b->Enqueue(append(2 * round + 1));
    b->Record(b_done);
    a->Wait(b_done);
  }
  ASSERT_TRUE(a->Synchronize().ok());
  ASSERT_TRUE(b->Synchronize().ok());
  ASSERT_EQ(log.size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(log[i], i);
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
  const absl::Status status = s->Synchronize();
  ExpectStatus(status, absl::StatusCode::kDataLoss, {"stream 'comm'", "short read of shard 3"});
  EXPECT_EQ(status.message().find("second error"), absl::string_view::npos);
  EXPECT_FALSE(later_ran);
  // The error is cleared: the stream works again.
  EXPECT_TRUE(s->Synchronize().ok());
  s->Enqueue([&] {
    later_ran = true;
    return absl::OkStatus();
  });
  EXPECT_TRUE(s->Synchronize().ok());
  EXPECT_TRUE(later_ran);
  // And a new error is reported again.
  s->Enqueue([] { return absl::UnavailableError("peer gone"); });
  ExpectStatus(s->Synchronize(), absl::StatusCode::kUnavailable, {"stream 'comm'", "peer gone"});
}

TEST(StreamTest, AFailedStreamStillCompletesItsEvents) {
  // Another stream waiting on an event recorded after the failure must not hang.
  WithDeadline(milliseconds(5000), [] {
    auto producer = MakeStream("io");
    auto consumer = MakeStream("compute");
    Event e = Event::Create(Device::Cpu());
    producer->Enqueue([] { return absl::DataLossError("bad shard"); });
    producer->Record(e);
    consumer->Wait(e);
    bool consumer_ran = false;
    consumer->Enqueue([&] {
      consumer_ran = true;
      return absl::OkStatus();
    });
    EXPECT_TRUE(consumer->Synchronize().ok());
    EXPECT_TRUE(consumer_ran);
    e.Synchronize();
    EXPECT_TRUE(e.Query());
    ExpectStatus(producer->Synchronize(), absl::StatusCode::kDataLoss,
                 {"stream 'io'", "bad shard"});
  });
}

TEST(StreamTest, DestructionDrainsTheQueue) {
  std::atomic<int> done{0};
  Event e = Event::Create(Device::Cpu());
  {
    auto s = MakeStream("drain");
    for (int i = 0; i < 10; ++i) {
      s->Enqueue([&] {
        std::this_thread::sleep_for(milliseconds(2));
        ++done;
        return absl::OkStatus();
      });
    }
    s->Record(e);
    s->Enqueue([] { return absl::AbortedError("never reported"); });
  }
  EXPECT_EQ(done, 10);
  EXPECT_TRUE(e.Query());
}

TEST(StreamTest, TasksUseTheProcessWideThreadCount) {
  // A stream's worker is a thread of its own; kernels it runs follow SetNumThreads all the same.
  auto s = MakeStream("compute");
  for (const int n : {1, 3}) {
    SetNumThreads(n);
    int team = 0, reported = 0;
    s->Enqueue([&team, &reported] {
      reported = NumThreads();  // what a kernel sizing its workspace would read
#pragma omp parallel
      {
#pragma omp single
        team = omp_get_num_threads();
      }
      return absl::OkStatus();
    });
    ASSERT_TRUE(s->Synchronize().ok());
    EXPECT_EQ(team, n);
    EXPECT_EQ(reported, n);
  }
  SetNumThreads(0);
}

TEST(StreamTest, CudaStreamsNeedTheCudaBackend) {
  ExpectStatus(Stream::Create(Device::Cuda(0), "gpu").status(), absl::StatusCode::kUnimplemented,
               {"stream 'gpu'", "cuda:0", "no CUDA backend"});
}

TEST(StreamDeathTest, UncreatedEventsAreInvariantViolations) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(Event().Query(), "never created");
  EXPECT_DEATH(Event().Synchronize(), "never created");
  EXPECT_DEATH(MakeStream("s")->Record(Event()), "stream 's': Record of an uncreated event");
  EXPECT_DEATH(MakeStream("s")->Wait(Event()), "stream 's': Wait on an uncreated event");
  EXPECT_DEATH(Event::Create(Device::Cuda(0)), "need the CUDA backend");
}

}  // namespace
}  // namespace strata
