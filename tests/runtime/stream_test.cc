// Tests of CPU streams and events: overlap across streams, order within one, event ordering across
// streams, error reporting, draining on destruction. Every assertion is about order and causality
// (gates, counters, events), never about elapsed time: the CI machine has 2 cores and runs these
// under ASan next to other tests. A timeout appears only as a deadlock guard, and it fails the
// test when it fires.
#include "runtime/stream.h"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/status.h"
#include "runtime/threading.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata {
namespace {

using testing::ExpectStatus;

// Long enough that no loaded machine reaches it unless something is deadlocked.
constexpr std::chrono::seconds kDeadlockGuard(60);

std::unique_ptr<Stream> MakeStream(const char* name) {
  return Stream::Create(Device::Cpu(), name).value();
}

// A one-shot gate: Open() once, Pass() waits until it is open. Pass gives up after the deadlock
// guard and says so in a Status, so that a stream task blocked on a gate that never opens fails
// the test instead of hanging it.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  absl::Status Pass(const char* what) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, kDeadlockGuard, [&] { return open_; })) {
      return absl::DeadlineExceededError(absl::StrCat(what, ": gate never opened"));
    }
    return absl::OkStatus();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Runs fn on another thread and fails (then aborts: the streams involved would block their
// destructors) if it has not finished within the deadlock guard.
void WithDeadline(std::function<void()> fn) {
  auto done = std::async(std::launch::async, std::move(fn));
  if (done.wait_for(kDeadlockGuard) != std::future_status::ready) {
    ADD_FAILURE() << "did not finish within " << kDeadlockGuard.count() << " s (deadlock)";
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

TEST(StreamTest, TwoStreamsRunConcurrently) {
  // Each task opens its own gate and then waits for the other's: in series the first one would
  // wait forever (until the guard fails it), so both finishing proves that they overlapped.
  auto a = MakeStream("compute");
  auto b = MakeStream("copy");
  Gate a_started, b_started;
  a->Enqueue([&] {
    a_started.Open();
    return b_started.Pass("compute waiting for copy");
  });
  b->Enqueue([&] {
    b_started.Open();
    return a_started.Pass("copy waiting for compute");
  });
  EXPECT_TRUE(a->Synchronize().ok());
  EXPECT_TRUE(b->Synchronize().ok());
}

TEST(StreamTest, EnqueueDoesNotBlockTheHost) {
  // The task cannot finish before the host opens the gate, which the host only does after
  // Enqueue has returned: an Enqueue that waited for its task would fail the task's Pass.
  auto s = MakeStream("async");
  Gate release;
  std::atomic<bool> finished{false};
  s->Enqueue([&] {
    absl::Status status = release.Pass("task waiting for the host");
    finished = true;
    return status;
  });
  EXPECT_FALSE(finished);
  release.Open();
  EXPECT_TRUE(s->Synchronize().ok());
  EXPECT_TRUE(finished);
}

TEST(StreamTest, RunsInOrderWithinAStreamOnOneThread) {
  auto s = MakeStream("ordered");
  std::vector<int> order;  // only the stream's worker touches it
  std::vector<std::thread::id> threads;
  for (int i = 0; i < 200; ++i) {
    s->Enqueue([&order, &threads, i] {
      if (i % 7 == 0) std::this_thread::yield();  // lets a wrongly parallel queue reorder
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
  // The producer's task is held at a gate until the consumer's work is already enqueued, so the
  // consumer reads the value (and takes its place in the order) only through the event.
  auto producer = MakeStream("io");
  auto consumer = MakeStream("compute");
  Event ready = Event::Create(Device::Cpu());
  EXPECT_EQ(ready.device(), Device::Cpu());
  EXPECT_TRUE(ready.Query());  // never recorded: nothing to wait for
  Gate release;
  std::atomic<int> value{0}, next{0};
  int seen = -1, produced_at = -1, consumed_at = -1;
  producer->Enqueue([&] {
    STRATA_RETURN_IF_ERROR(release.Pass("producer"));
    value = 42;
    produced_at = next++;
    return absl::OkStatus();
  });
  producer->Record(ready);
  EXPECT_FALSE(ready.Query());  // the producer's task cannot have finished: the gate is closed
  consumer->Wait(ready);
  consumer->Enqueue([&] {
    seen = value;
    consumed_at = next++;
    return absl::OkStatus();
  });
  release.Open();
  ASSERT_TRUE(consumer->Synchronize().ok());
  EXPECT_EQ(seen, 42);
  EXPECT_EQ(produced_at, 0);
  EXPECT_EQ(consumed_at, 1);
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
  // The task before the record finishes only once the host is about to block in Synchronize, so
  // an event that did not wait for it would let the host see `done` still false.
  Gate host_waiting, after_released;
  std::atomic<bool> done{false}, after_ran{false};
  s->Enqueue([&] {
    STRATA_RETURN_IF_ERROR(host_waiting.Pass("task before the record"));
    done = true;
    return absl::OkStatus();
  });
  s->Record(e);
  // Work after the record does not delay the event: this task is held until the host has
  // returned from e.Synchronize(), so waiting for it there would fail it at the guard.
  s->Enqueue([&] {
    STRATA_RETURN_IF_ERROR(after_released.Pass("task after the record"));
    after_ran = true;
    return absl::OkStatus();
  });
  host_waiting.Open();
  e.Synchronize();
  EXPECT_TRUE(done);
  EXPECT_FALSE(after_ran);
  EXPECT_TRUE(e.Query());
  after_released.Open();
  ASSERT_TRUE(s->Synchronize().ok());
  EXPECT_TRUE(after_ran);
}

// A producer that is not a stream (the NVMe engine's completion thread) records and completes a
// point on the host; a stream waiting on it holds its later work until then.
TEST(StreamTest, HostRecordedEventHoldsAStreamUntilCompletedOnHost) {
  auto s = MakeStream("compute");
  Event e = Event::Create(Device::Cpu());
  const uint64_t point = e.RecordOnHost();
  EXPECT_FALSE(e.Query());
  std::atomic<bool> ran{false};
  s->Wait(e);
  s->Enqueue([&] {
    ran = true;
    return absl::OkStatus();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(ran) << "the stream ran past a point not yet completed";
  std::thread producer([&] { e.CompleteOnHost(point); });
  ASSERT_TRUE(s->Synchronize().ok());
  producer.join();
  EXPECT_TRUE(ran);
  EXPECT_TRUE(e.Query());
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
  WithDeadline([] {
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
  // The first task is held until everything is enqueued, so the stream is destroyed with work
  // still queued behind it.
  std::atomic<int> done{0};
  Event e = Event::Create(Device::Cpu());
  Gate all_enqueued;
  {
    auto s = MakeStream("drain");
    for (int i = 0; i < 10; ++i) {
      s->Enqueue([&, i] {
        if (i == 0) STRATA_RETURN_IF_ERROR(all_enqueued.Pass("first task"));
        ++done;
        return absl::OkStatus();
      });
    }
    s->Record(e);
    s->Enqueue([] { return absl::AbortedError("never reported"); });
    EXPECT_FALSE(e.Query());
    all_enqueued.Open();
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
               {"stream 'gpu'", "cuda:0", "no CUDA backend", "InstallCudaStreams"});
}

// An event is a point in a queue, whatever the device: a CUDA stream's Record completes it from
// the device, and a CPU stream waits on it as on any other.
TEST(StreamTest, EventsOfAnyDeviceOrderCpuStreams) {
  Event on_gpu = Event::Create(Device::Cuda(0));
  EXPECT_EQ(on_gpu.device(), Device::Cuda(0));
  EXPECT_EQ(on_gpu.LastPoint(), 0u);
  const uint64_t point = on_gpu.RecordOnHost();
  EXPECT_EQ(on_gpu.LastPoint(), point);
  std::unique_ptr<Stream> s = MakeStream("waits");
  std::atomic<bool> ran{false};
  s->Wait(on_gpu);
  s->Enqueue([&] {
    ran = true;
    return absl::OkStatus();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(ran) << "ran before the point was reached";
  on_gpu.CompleteOnHost(point);
  ASSERT_TRUE(s->Synchronize().ok());
  EXPECT_TRUE(ran);
  on_gpu.SynchronizePoint(point);  // reached: returns at once
}

TEST(StreamDeathTest, UncreatedEventsAreInvariantViolations) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(Event().Query(), "never created");
  EXPECT_DEATH(Event().Synchronize(), "never created");
  EXPECT_DEATH(MakeStream("s")->Record(Event()), "stream 's': Record of an uncreated event");
  EXPECT_DEATH(MakeStream("s")->Wait(Event()), "stream 's': Wait on an uncreated event");
}

}  // namespace
}  // namespace strata
