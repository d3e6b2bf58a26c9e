// Data parallel training of the CNN, whose BatchNorms take their statistics over the global batch
// (Note [synchronized batch norm] in graph/passes/sync_batch_norm.cc), on 2 and 3 ranks (ctest
// runs this binary under mpiexec -n 2 and -n 3): each rank trains a small MobileNet on its rows of
// a global batch, and every rank also trains it alone on the whole batch (a world of one,
// computed locally), the reference. Per-step losses, the running statistics, the parameters and
// the held-out loss must match it within 1e-5 relative; recompute and the plan check change no
// bit; every rank ends with the same bytes; a step sends the ring all-reduce of every gradient and
// of each BatchNorm's statistics, forward and backward.
//
// Every rank runs every test in the same order, so the collectives match; a rank that skips one
// makes the others time out (20 s) and end the job.
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "collectives/mpi_communicator.h"
#include "gtest/gtest.h"
#include "tests/collectives/mpi_test_main.h"
#include "tests/graph/data_parallel_util.h"
#include "graph/compile.h"
#include "graph/models/mobilenet.h"
#include "graph/ops/ops.h"

namespace strata::graph {
namespace {

collectives::MpiCommunicator* Comm() { return &testing::JobCommunicator(); }  // the job's, from mpi_test_main

constexpr int64_t kGlobalBatch = 12;  // divisible by 1, 2 and 3 ranks times 2 micro-batches
constexpr int64_t kSide = 12;
constexpr int kSteps = 5;

MobileNetConfig Small() {
  MobileNetConfig c;
  c.stem = 8;
  c.blocks = {{8, 8, 1, 1}, {8, 16, 2, 2}, {16, 16, 1, 2}};
  c.head = 16;
  return c;
}

struct RunSetup {
  double clip = 0;
  int micro_batches = 1;
  bool recompute = false;
  bool check_plan = false;
  OffloadOptions offload{};
  ZeroOptions zero{};
};

// Global batch `step` (micro_batches * kGlobalBatch rows): images and labels from the row index.
// This rank's share: rows [rank * B / W, (rank + 1) * B / W) of every micro-batch of B rows.
std::vector<Tensor> Batch(int step, int micro_batches, int world, int rank) {
  const int64_t mine = kGlobalBatch / world;
  Tensor images = Tensor::Empty(Shape{micro_batches * mine, 1, kSide, kSide}, DType::kF32,
                                DefaultCpuAllocator()).value();
  Tensor labels = Tensor::Empty(Shape{micro_batches * mine}, DType::kI32, DefaultCpuAllocator()).value();
  for (int i = 0; i < micro_batches; ++i) {
    for (int64_t r = 0; r < mine; ++r) {
      const int64_t global_row = i * kGlobalBatch + rank * mine + r, row = i * mine + r;
      std::mt19937 rng(static_cast<uint32_t>(1000 * step + global_row));
      std::uniform_real_distribution<float> pixel(-1.0f, 2.0f);
      for (int64_t p = 0; p < kSide * kSide; ++p) {
        images.data<float>()[row * kSide * kSide + p] = pixel(rng);
      }
      labels.data<int32_t>()[row] = static_cast<int32_t>(rng() % 10);
    }
  }
  return {images, labels};
}

struct Trained {
  std::vector<StepStats> stats;
  double held_out = 0;
  std::vector<std::string> names;
  std::vector<std::vector<float>> state;  // parameters and buffers, then optimizer state
};

// Trains on `world` ranks (this rank's rows) or, with `alone`, on the whole batch in one process.
Trained Train(const RunSetup& setup, bool alone) {
  const int world = alone ? 1 : Comm()->world_size(), rank = alone ? 0 : Comm()->rank();
  const int64_t micro_rows = kGlobalBatch / world;
  MobileNet net(Small());
  TrainOptions o;
  o.optimizer = OptimizerOptions::Sgd(0.9, 5e-4);
  o.schedule = {.kind = optim::LrSchedule::kCosine, .max_lr = 0.1, .min_lr = 0.01,
                .warmup_steps = 1, .total_steps = kSteps};
  o.clip_grad_norm = setup.clip;
  o.micro_batches = setup.micro_batches;
  o.recompute = setup.recompute;
  o.check_plan = setup.check_plan;
  o.offload = setup.offload;
  o.seed = 7;
  o.communicator = alone ? nullptr : Comm();
  o.zero = setup.zero;
  auto p = Compile(net, {{"images", Shape{micro_rows, 1, kSide, kSide}},
                         {"labels", Shape{micro_rows}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Forward(in[0]), in[1]); },
                   o);
  Trained r;
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return r;
  for (int s = 0; s < kSteps; ++s) {
    absl::StatusOr<StepStats> st = (*p)->Step(Batch(s, setup.micro_batches, world, rank));
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) return r;
    r.stats.push_back(*st);
  }
  absl::StatusOr<double> held_out = (*p)->Evaluate(Batch(kSteps, setup.micro_batches, world, rank));
  EXPECT_TRUE(held_out.ok()) << held_out.status();
  r.held_out = held_out.ok() ? *held_out : NAN;
  for (const auto* named : {&(*p)->parameter_values(), &(*p)->optimizer_state_values()}) {
    for (const auto& [name, v] : *named) {
      Tensor t = (*p)->ReadState(v, DefaultCpuAllocator()).value();
      r.names.push_back(name);
      r.state.emplace_back(t.data<float>(), t.data<float>() + t.numel());
    }
  }
  return r;
}

// Per tensor, against its largest element or 1, whichever is larger: as ExpectRelativelyNear,
// since some tensors are all near zero (a bias whose gradients cancel, the running mean of a
// normalized layer's output), where sums of O(1) terms in another order differ by their rounding.
void ExpectSameState(const Trained& got, const Trained& want, double tolerance) {
  ASSERT_EQ(got.state.size(), want.state.size());
  int running = 0;
  for (size_t i = 0; i < want.state.size(); ++i) {
    double scale = 0, diff = 0;
    for (size_t k = 0; k < want.state[i].size(); ++k) {
      scale = std::max(scale, std::abs(static_cast<double>(want.state[i][k])));
      diff = std::max(diff, std::abs(static_cast<double>(want.state[i][k]) - got.state[i][k]));
    }
    EXPECT_LE(diff, tolerance * std::max(scale, 1.0)) << want.names[i];
    running += absl::StrContains(want.names[i], "running_");
  }
  EXPECT_GT(running, 0) << "no running statistics compared";
}

void ExpectSameOnEveryRank(const Trained& t) {
  std::vector<float> flat;
  for (const auto& s : t.state) flat.insert(flat.end(), s.begin(), s.end());
  std::vector<float> rank0 = flat;
  MPI_Bcast(rank0.data(), static_cast<int>(rank0.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  EXPECT_EQ(flat, rank0) << "rank " << Comm()->rank() << "'s state differs from rank 0's";
}

void ExpectSameTraining(const RunSetup& setup) {
  const Trained alone = Train(setup, /*alone=*/true);
  const Trained parallel = Train(setup, /*alone=*/false);
  ASSERT_EQ(alone.stats.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(parallel.stats.size(), static_cast<size_t>(kSteps));
  for (int s = 0; s < kSteps; ++s) {
    ExpectRelativelyNear(parallel.stats[s].loss, alone.stats[s].loss, 1e-5,
                         absl::StrCat("loss of step ", s + 1));
    EXPECT_EQ(parallel.stats[s].world_size, Comm()->world_size());
  }
  ExpectRelativelyNear(parallel.held_out, alone.held_out, 1e-5, "held-out loss (running statistics)");
  ExpectSameState(parallel, alone, 1e-5);
  ExpectSameOnEveryRank(parallel);
}

TEST(DataParallelCnnTest, LossesAndRunningStatisticsMatchOneProcess) { ExpectSameTraining({}); }

// ZeRO-3 over every tensor (SGD's momentum sharded, each convolution gathered before its use)
// with synchronized BatchNorm: the losses and held-out loss of one process.
TEST(DataParallelCnnTest, ZeroStageThreeWithSgdMatchesOneProcess) {
  const Trained alone = Train({.clip = 1.0}, /*alone=*/true);
  const Trained zero3 = Train({.clip = 1.0, .zero = {.stage = 3, .persistence_threshold = 0}},
                              /*alone=*/false);
  ASSERT_EQ(zero3.stats.size(), static_cast<size_t>(kSteps));
  for (int s = 0; s < kSteps; ++s) {
    ExpectRelativelyNear(zero3.stats[s].loss, alone.stats[s].loss, 1e-5,
                         absl::StrCat("loss of step ", s + 1));
  }
  ExpectRelativelyNear(zero3.held_out, alone.held_out, 1e-5, "held-out loss");
}

TEST(DataParallelCnnTest, MicroBatchesAndClippingMatchOneProcess) {
  ExpectSameTraining({.clip = 1.0, .micro_batches = 2});
}

// The recomputed copies read the forward's summed statistics: no collective, the same bytes.
// Neither does a placement of every state and kept activation on the host change a bit.
TEST(DataParallelCnnTest, RecomputeThePlanCheckAndPlacementChangeNoBit) {
  const Trained plain = Train({}, false);
  OffloadOptions host;
  host.params = host.grads = host.optimizer = host.activations = MemoryTier::kHost;
  host.persistence_threshold = 0;
  for (const RunSetup& s : {RunSetup{.recompute = true}, RunSetup{.check_plan = true},
                            RunSetup{.recompute = true, .check_plan = true},
                            RunSetup{.recompute = true, .offload = host}}) {
    const Trained other = Train(s, false);
    ASSERT_EQ(other.stats.size(), plain.stats.size());
    for (size_t i = 0; i < plain.stats.size(); ++i) {
      EXPECT_EQ(other.stats[i].loss, plain.stats[i].loss)
          << "step " << i + 1 << " recompute " << s.recompute << " check_plan " << s.check_plan;
      EXPECT_EQ(other.stats[i].comm_bytes, plain.stats[i].comm_bytes);
    }
    EXPECT_EQ(other.state, plain.state);
  }
}

// Per step: the ring all-reduce of the gradients (all below the persistence threshold: one bucket,
// Note [bucketed all-reduces]), and of each BatchNorm's (W, 4, C) statistics in the forward and
// in the backward.
TEST(DataParallelCnnTest, CommunicationBytesAreTheGradientsAndTheStatistics) {
  const Trained r = Train({}, false);
  ASSERT_FALSE(r.stats.empty());
  MobileNet net(Small());
  const int world = Comm()->world_size(), rank = Comm()->rank();
  auto ring = [&](int64_t count) {
    return collectives::RingBytesSent(collectives::CommOp::kAllReduce, count, {}, 4, world, rank);
  };
  int64_t want = 0, gradients = 0;
  int batch_norms = 0;
  net.ForEachParameter([&](const std::string& path, Parameter& p) {
    if (p.trainable()) {
      EXPECT_LT(p.shape().numel(), ZeroOptions{}.persistence_threshold) << path;
      gradients += p.shape().numel();
    }
    if (absl::EndsWith(path, ".running_mean")) {
      want += 2 * ring(world * 4 * p.shape().numel());
      ++batch_norms;
    }
  });
  EXPECT_GT(batch_norms, 0);
  want += ring(gradients);
  for (const StepStats& s : r.stats) EXPECT_EQ(s.comm_bytes, want);
}

}  // namespace
}  // namespace strata::graph
