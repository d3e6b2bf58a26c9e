// Training with state homed off the device: the same model trained with parameters, gradients
// and optimizer state on host or NVMe (both IO engines) gives bit-identical losses and state to
// the run with everything in memory; budgets hold and the measured peak per tier equals the
// plan; a budget too small fails at compile time naming the smallest that works; and the
// offload schedule's IO nodes show in the dump.
#include <filesystem>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/models/mobilenet.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};
constexpr MemoryTier kDevice = MemoryTier::kDevice, kHost = MemoryTier::kHost,
                     kNvme = MemoryTier::kNvme;

std::string SwapDir() {
  const fs::path dir = fs::path(::testing::TempDir()) / "offload_test";
  fs::create_directories(dir);
  return dir.string();
}

struct Placement {
  MemoryTier params = kDevice, grads = kDevice, optimizer = kDevice, activations = kDevice;
  offload::IoEngineKind engine = offload::IoEngineKind::kThreads;
  int64_t prefetch = int64_t{64} << 20;
  int64_t persist = 0;  // OffloadOptions::persistence_threshold
  std::string Name() const {
    return absl::StrCat("params ", MemoryTierName(params), ", grads ", MemoryTierName(grads),
                        ", optimizer ", MemoryTierName(optimizer), ", activations ",
                        MemoryTierName(activations), ", ",
                        offload::IoEngineKindName(engine), ", prefetch ", prefetch,
                        persist > 0 ? absl::StrCat(", persistence threshold ", persist) : "");
  }
};

OffloadOptions Offload(const Placement& p) {
  OffloadOptions o;
  o.params = p.params;
  o.grads = p.grads;
  o.optimizer = p.optimizer;
  o.activations = p.activations;
  o.prefetch_bytes = p.prefetch;
  o.persistence_threshold = p.persist;  // 0 by default: the tiny models' parameters are all small
  o.io.dir = SwapDir();
  o.io.engine = p.engine;
  o.io.block_size = 16 << 10;  // small chunks, so tensors span several and the pipeline turns
  return o;
}

Tensor Tokens(int64_t b, int64_t t, uint32_t seed) {
  Tensor x = Tensor::Empty(Shape{b, t}, DType::kI32, DefaultCpuAllocator()).value();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>(rng() % kTiny.vocab);
  return x;
}

TrainOptions GptOptions(double clip, int micro_batches) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kCosine, .max_lr = 1e-2, .min_lr = 1e-3,
                .warmup_steps = 2, .total_steps = 20};
  o.clip_grad_norm = clip;
  o.micro_batches = micro_batches;
  o.seed = 3;
  return o;
}

// `gpt` compiled with `o` for batches of 2 x 16 tokens.
absl::StatusOr<std::unique_ptr<Program>> CompileTiny(Gpt& gpt, const TrainOptions& o) {
  return Compile(gpt, {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}},
                 [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                 o);
}

struct Trained {
  std::vector<double> losses;
  double evaluated = 0;  // Program::Evaluate on the batch after the last step
  std::vector<std::vector<float>> state;  // every parameter and optimizer state, in order
  std::vector<StepStats> stats;
  MemoryReport report;
  // Spilled activations (block inputs written home): how many, and how many of them the plan
  // keeps live on the device past the first node of the backward.
  int spilled = 0, held_into_backward = 0;
};

std::vector<float> Floats(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

Trained Finish(Program& p, const std::vector<Tensor>& batch, int steps) {
  Trained r;
  r.report = p.memory_report();
  const Graph& g = p.graph();
  int backward = static_cast<int>(g.nodes().size());
  for (int i = static_cast<int>(g.nodes().size()) - 1; i >= 0; --i) {
    for (ValueId v : g.nodes()[i].outputs) {
      if (v != kNoValue && g.value(v).role == ValueRole::kGradient) backward = i;
    }
  }
  for (const Node& n : g.nodes()) {
    if (n.op->kind() != OpKind::kWriteBack || g.value(n.inputs[0]).role != ValueRole::kActivation) {
      continue;
    }
    ++r.spilled;
    if (!p.plan().live.empty() && p.plan().live[n.inputs[0]].second >= backward) {
      ++r.held_into_backward;
    }
  }
  for (int s = 0; s < steps; ++s) {
    absl::StatusOr<StepStats> st = p.Step(batch);
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) return r;
    r.losses.push_back(st->loss);
    r.stats.push_back(*st);
  }
  absl::StatusOr<double> eval = p.Evaluate(batch);
  EXPECT_TRUE(eval.ok()) << eval.status();
  if (eval.ok()) r.evaluated = *eval;
  for (const auto* named : {&p.parameter_values(), &p.optimizer_state_values()}) {
    for (const auto& [name, v] : *named) {
      absl::StatusOr<Tensor> t = p.ReadState(v, DefaultCpuAllocator());
      EXPECT_TRUE(t.ok()) << name << ": " << t.status();
      if (t.ok()) r.state.push_back(Floats(*t));
    }
  }
  return r;
}

Trained TrainGpt(const Placement& where, double clip, int micro_batches, int steps = 4,
             int64_t device_budget = 0, const GptConfig& config = kTiny, bool check_plan = false,
             bool recompute = false) {
  Gpt gpt(config);
  TrainOptions o = GptOptions(clip, micro_batches);
  o.check_plan = check_plan;
  o.recompute = recompute;
  o.offload = Offload(where);
  o.offload.device_bytes = device_budget;
  const int64_t b = 2 * micro_batches;
  auto p = CompileTiny(gpt, o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return {};
  return Finish(**p, {Tokens(b, 16, 1), Tokens(b, 16, 2)}, steps);
}

void ExpectSameRun(const Trained& a, const Trained& b) {
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (size_t s = 0; s < a.losses.size(); ++s) {
    EXPECT_EQ(a.losses[s], b.losses[s]) << "step " << s;  // bitwise: the same kernels, same order
    EXPECT_EQ(a.stats[s].grad_norm, b.stats[s].grad_norm) << "step " << s;
  }
  EXPECT_EQ(a.evaluated, b.evaluated);
  ASSERT_EQ(a.state.size(), b.state.size());
  for (size_t i = 0; i < a.state.size(); ++i) EXPECT_EQ(a.state[i], b.state[i]) << "state " << i;
}

const Placement kPlacements[] = {
    {.params = kHost, .grads = kHost, .optimizer = kHost},
    {.params = kNvme, .grads = kNvme, .optimizer = kNvme},
    {.params = kNvme, .grads = kNvme, .optimizer = kNvme, .engine = offload::IoEngineKind::kAuto},
    {.params = kNvme, .grads = kNvme, .optimizer = kNvme, .prefetch = 0},
    {.params = kDevice, .grads = kDevice, .optimizer = kNvme},
    {.params = kNvme, .grads = kDevice, .optimizer = kHost},
    {.params = kHost, .grads = kNvme, .optimizer = kDevice},
    {.params = kNvme, .grads = kHost, .optimizer = kNvme},  // deferred with clipping
    // The norms and the smaller biases stay on the device: their updates run among the deferred
    // ones at the end of the step.
    {.params = kNvme, .grads = kNvme, .optimizer = kNvme, .persist = 100},
    // The final gradients wait on the host for the NVMe updates (Note [home tiers]): deferred.
    {.params = kNvme, .grads = kDevice, .optimizer = kNvme},
};

TEST(OffloadTest, GptTrainsBitIdenticallyWherever) {
  for (double clip : {1.0, 0.0}) {
    const Trained memory = TrainGpt({}, clip, 1);
    ASSERT_EQ(memory.losses.size(), 4u);
    for (const Placement& where : kPlacements) {
      SCOPED_TRACE(absl::StrCat(where.Name(), ", clip ", clip));
      const Trained offloaded = TrainGpt(where, clip, 1);
      ExpectSameRun(memory, offloaded);
      const StepStats& s = offloaded.stats.back();
      const int64_t moved = s.io_read_bytes[0] + s.io_read_bytes[1] + s.io_read_bytes[2];
      EXPECT_GT(moved, 0);
      if (where.params == kNvme) {
        EXPECT_GT(s.io_read_bytes[static_cast<int>(kNvme)], 0);
      }
    }
  }
}

// Parameter groups (Note [parameter groups]) are in the update nodes, which the offloaded
// (chunked, deferred) updates run as they are: the same bits wherever the state lives.
TEST(OffloadTest, ParameterGroupsTrainBitIdenticallyWherever) {
  auto train = [](const Placement& where) {
    Gpt gpt(kTiny);
    TrainOptions o = GptOptions(/*clip=*/1.0, /*micro_batches=*/1);
    o.optimizer.groups = {{.match = "h.0.*", .lr_scale = 0},
                          {.match = "*.bias", .lr_scale = 3, .weight_decay = 0.5},
                          {.match = "wte.*", .lr_scale = 0.5, .weight_decay = 0}};
    o.offload = Offload(where);
    auto p = CompileTiny(gpt, o);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return Trained{};
    return Finish(**p, {Tokens(2, 16, 1), Tokens(2, 16, 2)}, 4);
  };
  const Trained memory = train({});
  ASSERT_EQ(memory.losses.size(), 4u);
  EXPECT_NE(memory.state, TrainGpt({}, 1.0, 1).state);  // the groups changed the run
  for (const Placement& where : {kPlacements[1], kPlacements[4], kPlacements[7], kPlacements[8]}) {
    SCOPED_TRACE(where.Name());
    ExpectSameRun(memory, train(where));
  }
}

// Note [deferred updates]: with clipping, the updates that write only NVMe-homed state finish
// inside the next step (the bitwise checks above cover their values), so the first step writes
// none of the parameters and moments and every later one writes all of them (and no scaled
// gradient: it is dead after the update); an update that writes host memory (but its own
// gradient's home) is never deferred.
TEST(OffloadTest, UpdatesThatWriteOnlyNvmeFinishInsideTheNextStep) {
  int64_t updated_bytes = 0;  // parameters, exp_avg and exp_avg_sq, written by each step's updates
  {
    Gpt gpt(kTiny);
    gpt.ForEachParameter([&](const std::string&, Parameter& p) {
      if (p.trainable()) updated_bytes += 3 * 4 * p.shape().numel();
    });
  }
  const int nvme = static_cast<int>(kNvme), host = static_cast<int>(kHost);
  for (int micro_batches : {1, 2}) {
    SCOPED_TRACE(absl::StrCat(micro_batches, " micro-batches"));
    // With micro-batches the update also zeroes the gradient accumulator: a fourth array.
    const int64_t written = updated_bytes * (micro_batches == 1 ? 1 : 4) / (micro_batches == 1 ? 1 : 3);
    const Trained deferred = TrainGpt(kPlacements[1], 1.0, micro_batches, 3);
    ASSERT_EQ(deferred.stats.size(), 3u);
    EXPECT_EQ(deferred.stats[1].io_write_bytes[nvme] - deferred.stats[0].io_write_bytes[nvme],
              written);
    EXPECT_EQ(deferred.stats[2].io_write_bytes[nvme], deferred.stats[1].io_write_bytes[nvme]);
    const Trained on_host = TrainGpt(kPlacements[0], 1.0, micro_batches, 3);
    EXPECT_EQ(on_host.stats[0].io_write_bytes[host], on_host.stats[1].io_write_bytes[host]);
  }
  // Gradients on the host: clipping scales them in place there, which only their own update
  // reads, so the updates are still deferred: step 1 writes nothing to NVMe, step 2 every
  // parameter and moment.
  const Trained host_grads = TrainGpt(kPlacements[7], 1.0, 1, 3);
  ASSERT_EQ(host_grads.stats.size(), 3u);
  EXPECT_EQ(host_grads.stats[0].io_write_bytes[nvme], 0);
  EXPECT_EQ(host_grads.stats[1].io_write_bytes[nvme], updated_bytes);
  // Gradients on the device with parameters and optimizer state on NVMe: the final gradients are
  // staged on the host, so the updates are deferred all the same; with a host budget they stay
  // on the device, and every step writes its updates.
  const Trained staged = TrainGpt(kPlacements[9], 1.0, 1, 3);
  ASSERT_EQ(staged.stats.size(), 3u);
  EXPECT_EQ(staged.stats[0].io_write_bytes[nvme], 0);
  EXPECT_EQ(staged.stats[1].io_write_bytes[nvme], updated_bytes);
  EXPECT_GT(staged.stats[0].io_write_bytes[host], 0);  // the gradients, written to the host
  {
    Gpt gpt(kTiny);
    TrainOptions o = GptOptions(1.0, 1);
    o.offload = Offload(kPlacements[9]);
    o.offload.host_bytes = int64_t{64} << 20;
    auto p = CompileTiny(gpt, o);
    ASSERT_TRUE(p.ok()) << p.status();
    const Trained bounded = Finish(**p, {Tokens(2, 16, 1), Tokens(2, 16, 2)}, 2);
    ASSERT_EQ(bounded.stats.size(), 2u);
    EXPECT_EQ(bounded.stats[0].io_write_bytes[nvme], updated_bytes);
    EXPECT_EQ(bounded.stats[0].io_write_bytes[host], 0);
  }
  // Parameters under the persistence threshold stay on the device, and their updates run at the
  // end of the step among the deferred ones, which are still all deferred.
  int64_t offloaded_bytes = 0;
  {
    Gpt gpt(kTiny);
    gpt.ForEachParameter([&](const std::string&, Parameter& p) {
      if (p.trainable() && p.shape().numel() >= kPlacements[8].persist) {
        offloaded_bytes += 3 * 4 * p.shape().numel();
      }
    });
  }
  ASSERT_LT(offloaded_bytes, updated_bytes);
  const Trained mixed = TrainGpt(kPlacements[8], 1.0, 1, 3);
  ASSERT_EQ(mixed.stats.size(), 3u);
  EXPECT_EQ(mixed.stats[1].io_write_bytes[nvme] - mixed.stats[0].io_write_bytes[nvme],
            offloaded_bytes);
}

// A weight gradient's write-back must be done by the time its source's bytes are reused, but not
// before the next gradient is computed: the elementwise node after its producer (gelu_grad, the
// layer norm's gradient) must not wait for it, or every layer of the backward stalls on the disk.
TEST(OffloadTest, AGradientsWriteBackOverlapsTheNextGradient) {
  Gpt gpt(kTiny);
  TrainOptions o = GptOptions(1.0, 1);
  o.offload = Offload(kPlacements[1]);
  auto p = CompileTiny(gpt, o);
  ASSERT_TRUE(p.ok()) << p.status();
  const Graph& g = (*p)->graph();
  const std::vector<Node>& nodes = g.nodes();
  const std::vector<int> done = IoCompletionPoints(g);
  const int n = static_cast<int>(nodes.size());
  int checked = 0;
  for (int i = 0; i < n; ++i) {
    if (nodes[i].op->kind() != OpKind::kWriteBack || g.value(nodes[i].inputs[0]).type.shape.rank() != 2) {
      continue;
    }
    int next_gradient = -1;
    for (int j = i + 1; j < n && next_gradient < 0; ++j) {
      if (nodes[j].op->kind() == OpKind::kLinearGrad) next_gradient = j;
    }
    if (next_gradient < 0) continue;
    ++checked;
    EXPECT_GT(done[i], next_gradient) << g.value(nodes[i].inputs[0]).name;
    EXPECT_LT(done[i], n) << g.value(nodes[i].inputs[0]).name << " is held to the end of the step";
  }
  EXPECT_GE(checked, 4 * kTiny.layers - 1);
}

// Note [handing the parameter over]: a deferred update copies the new parameter into the fetch
// right after it, which then reads nothing. Step 1 reads each parameter once (its fetch); every
// later step also runs the deferred updates, which read the parameter, gradient and both moments,
// and hand the fetch its parameter: 3 more reads of each, not 4. The losses match (above).
TEST(OffloadTest, ADeferredUpdateHandsItsFetchTheNewParameter) {
  int64_t param_bytes = 0;
  {
    Gpt gpt(kTiny);
    gpt.ForEachParameter([&](const std::string&, Parameter& p) {
      if (p.trainable()) param_bytes += 4 * p.shape().numel();
    });
  }
  const int nvme = static_cast<int>(kNvme);
  const Trained run = TrainGpt(kPlacements[1], 1.0, 1, 3);
  ASSERT_EQ(run.stats.size(), 3u);
  EXPECT_EQ(run.stats[1].io_read_bytes[nvme] - run.stats[0].io_read_bytes[nvme], 3 * param_bytes);
  EXPECT_EQ(run.stats[2].io_read_bytes[nvme], run.stats[1].io_read_bytes[nvme]);
}

// The order the deferred updates run in: each right before the first node of the next step that
// touches one of its values, so that the forward's first fetches do not wait for every update.
TEST(OffloadTest, DeferredUpdatesRunJustBeforeTheirValuesAreNeeded) {
  Gpt gpt(kTiny);
  TrainOptions o = GptOptions(1.0, 1);
  o.offload = Offload(kPlacements[1]);
  auto p = CompileTiny(gpt, o);
  ASSERT_TRUE(p.ok()) << p.status();
  const Graph& g = (*p)->graph();
  ValueId norm = kNoValue;
  for (ValueId v = 0; v < g.num_values(); ++v) {
    if (g.value(v).name == "grad_norm") norm = v;
  }
  ASSERT_NE(norm, kNoValue);
  std::vector<int> all(g.nodes().size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  const std::vector<int> tail = DeferredUpdates(g, all, norm);
  int updates = 0;
  for (const Node& n : g.nodes()) updates += n.op->kind() == OpKind::kOffloadedUpdate;
  EXPECT_EQ(static_cast<int>(tail.size()), updates);
  const std::vector<int> body(all.begin(), all.end() - static_cast<std::ptrdiff_t>(tail.size()));
  const DeferredSequence steady = InterleaveDeferred(g, tail, body, norm);
  ASSERT_EQ(steady.entries.size(), all.size());
  auto touches = [&](int node, ValueId v) {
    const Node& n = g.nodes()[node];
    return std::count(n.inputs.begin(), n.inputs.end(), v) + std::count(n.outputs.begin(), n.outputs.end(), v) > 0;
  };
  int first_fetch = -1, last_deferred = -1;
  for (size_t pos = 0; pos < steady.entries.size(); ++pos) {
    const int node = steady.entries[pos];
    if (first_fetch < 0 && g.nodes()[node].op->kind() == OpKind::kFetch) first_fetch = static_cast<int>(pos);
    if (std::find(tail.begin(), tail.end(), node) == tail.end()) continue;
    last_deferred = static_cast<int>(pos);
    // Note [handing the parameter over]: each update hands the fetch of its parameter, right
    // after it, the new bytes.
    const int k = static_cast<int>(std::find(tail.begin(), tail.end(), node) - tail.begin());
    ASSERT_LT(pos + 1, steady.entries.size());
    EXPECT_EQ(steady.hands_to[k], steady.entries[pos + 1]);
    const Node& next = g.nodes()[steady.entries[pos + 1]];
    EXPECT_EQ(next.op->kind(), OpKind::kFetch);
    EXPECT_EQ(next.inputs[0], g.nodes()[node].inputs[0]);
    bool needed_later = false;
    for (ValueId v : g.nodes()[node].inputs) {
      if (v == norm) continue;
      for (size_t q = 0; q < pos; ++q) {
        EXPECT_FALSE(touches(steady.entries[q], v))
            << "node " << steady.entries[q] << " touches " << g.value(v).name << " before its update";
      }
      for (size_t q = pos + 1; q < steady.entries.size(); ++q) needed_later |= touches(steady.entries[q], v);
    }
    EXPECT_TRUE(needed_later) << "the update of node " << node << " is needed by no later node";
  }
  EXPECT_GT(last_deferred, first_fetch) << "every deferred update runs before the first fetch";
}

// The plan check (Note [checking the plan]) runs the staged copies and the IO nodes over their
// planned intervals, with each value in its own block: same losses, no overlap, no stale read.
TEST(OffloadTest, ThePlanCheckAcceptsTheOffloadSchedule) {
  const Trained memory = TrainGpt({}, 1.0, 1, 2);
  for (const Placement& where : {kPlacements[1], kPlacements[5], kPlacements[6], kPlacements[8]}) {
    SCOPED_TRACE(where.Name());
    ExpectSameRun(memory, TrainGpt(where, 1.0, 1, 2, 0, kTiny, /*check_plan=*/true));
  }
}

// Activation checkpointing and offloading together: the recomputed blocks read staged
// parameters like the first forward did.
TEST(OffloadTest, RecomputeWithStateOnNvmeTrainsBitIdentically) {
  const Trained memory = TrainGpt({}, 1.0, 1, 3);
  for (bool check_plan : {false, true}) {
    SCOPED_TRACE(check_plan ? "plan checked" : "planned");
    ExpectSameRun(memory, TrainGpt(kPlacements[1], 1.0, 1, 3, 0, kTiny, check_plan,
                                   /*recompute=*/true));
  }
}

// The block inputs that recompute keeps, written home in the forward and fetched back for the
// backward (ZeRO-Infinity's offloaded activation checkpoints): same bits, fewer device bytes.
TEST(OffloadTest, ActivationCheckpointsOnHostOrNvmeTrainBitIdenticallyInLessDeviceMemory) {
  constexpr GptConfig kDeep{.vocab = 64, .block_size = 16, .layers = 6, .width = 32, .heads = 4};
  const Trained memory = TrainGpt({}, 1.0, 1, 3, 0, kDeep);
  const Trained kept = TrainGpt({}, 1.0, 1, 3, 0, kDeep, false, /*recompute=*/true);
  ExpectSameRun(memory, kept);
  for (MemoryTier home : {kHost, kNvme}) {
    for (bool check_plan : {false, true}) {
      const Placement where{.activations = home, .prefetch = 0};
      SCOPED_TRACE(absl::StrCat(where.Name(), check_plan ? ", plan checked" : ""));
      const Trained spilled = TrainGpt(where, 1.0, 1, 3, 0, kDeep, check_plan, true);
      ExpectSameRun(memory, spilled);
      if (check_plan) continue;
      EXPECT_GT(spilled.stats.back().io_write_bytes[static_cast<int>(home)], 0);
      // Every block's input is written home and freed on the device before the backward.
      EXPECT_EQ(spilled.spilled, kDeep.layers);
      EXPECT_EQ(spilled.held_into_backward, 0);
    }
  }
}

TEST(OffloadTest, AnActivationsHomeWithoutRecomputeIsRefused) {
  Gpt gpt(kTiny);
  TrainOptions o = GptOptions(1.0, 1);
  o.offload.activations = kHost;
  auto p = CompileTiny(gpt, o);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("--recompute"));
}

TEST(OffloadTest, GradientAccumulationTrainsBitIdenticallyWherever) {
  const Trained memory = TrainGpt({}, 1.0, 2, 3);
  // kPlacements[4]: the accumulator stays on the device, and the zero node after the offloaded
  // update that reads it waits for it.
  for (const Placement& where : {kPlacements[0], kPlacements[1], kPlacements[4], kPlacements[6]}) {
    SCOPED_TRACE(where.Name());
    ExpectSameRun(memory, TrainGpt(where, 1.0, 2, 3));
  }
}

TEST(OffloadTest, CnnWithBatchNormAndSgdTrainsBitIdenticallyWherever) {
  auto train = [](const Placement& where) {
    MobileNetConfig c;
    c.blocks = {{16, 16, 1, 1}, {16, 24, 2, 4}};
    c.head = 32;
    MobileNet net(c);
    TrainOptions o;
    o.optimizer = OptimizerOptions::Sgd(/*momentum=*/0.9, /*weight_decay=*/5e-4);
    o.schedule.max_lr = 0.05;
    o.seed = 1;
    o.offload = Offload(where);
    auto p = Compile(net, {{"images", Shape{4, 1, 28, 28}}, {"labels", Shape{4}, DType::kI32}},
                     [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Forward(in[0]), in[1]); },
                     o);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return Trained{};
    std::mt19937_64 rng(5);
    Tensor labels = Tensor::Empty(Shape{4}, DType::kI32, DefaultCpuAllocator()).value();
    for (int i = 0; i < 4; ++i) labels.data<int32_t>()[i] = i % 10;
    return Finish(**p, {testing::RandomTensor(Shape{4, 1, 28, 28}, rng), labels}, 3);
  };
  const Trained memory = train({});
  ASSERT_EQ(memory.losses.size(), 3u);
  for (const Placement& where : {kPlacements[0], kPlacements[1], kPlacements[2], kPlacements[5]}) {
    SCOPED_TRACE(where.Name());
    ExpectSameRun(memory, train(where));
  }
}

// With a device budget below the model states, training runs, the measured peak of every tier
// stays under its budget and equals the plan.
TEST(OffloadTest, BudgetsHoldAndThePlannedPeakPerTierIsTheMeasuredOne) {
  // Wide enough that the model states outweigh the activations.
  constexpr GptConfig kWide{.vocab = 64, .block_size = 16, .layers = 2, .width = 128, .heads = 4};
  const Trained memory = TrainGpt({}, 1.0, 1, 1, 0, kWide);
  const int64_t states = memory.report.persistent_bytes;
  const int64_t budget = states / 2;
  const Placement all_nvme{.params = kNvme, .grads = kNvme, .optimizer = kNvme};
  const Trained run = TrainGpt(all_nvme, 1.0, 1, 3, budget, kWide);
  ASSERT_EQ(run.stats.size(), 3u);
  EXPECT_LE(run.report.planned_peak[0], budget);
  for (const StepStats& s : run.stats) {
    for (int t = 0; t < kNumMemoryTiers; ++t) {
      EXPECT_EQ(s.peak_bytes[t], run.report.planned_peak[t]) << "tier " << t;
    }
  }
  EXPECT_GT(run.report.nvme_bytes, states);  // parameters, moments and gradients
}

TEST(OffloadTest, ABudgetTooSmallFailsAtCompileTimeWithTheSmallestThatWorks) {
  Gpt gpt(kTiny);
  TrainOptions o = GptOptions(1.0, 1);
  o.offload = Offload({.params = kNvme, .grads = kNvme, .optimizer = kNvme});
  o.offload.device_bytes = 1000;
  auto p = CompileTiny(gpt, o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(p.status().message(), HasSubstr("device budget of"));
  EXPECT_THAT(p.status().message(), HasSubstr("need at least"));
  // The number it states is enough.
  const std::string m(p.status().message());
  const size_t at = m.find("need at least ");
  const size_t open = m.find('(', at);
  const int64_t least = std::stoll(m.substr(open + 1));
  o.offload.device_bytes = least;
  Gpt again(kTiny);
  auto q = Compile(again, {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(again.Forward(in[0]), in[1]); },
                   o);
  EXPECT_TRUE(q.ok()) << q.status();
  o.offload.device_bytes = least - 64;
  Gpt third(kTiny);
  auto r = Compile(third, {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(third.Forward(in[0]), in[1]); },
                   o);
  EXPECT_FALSE(r.ok());
}

TEST(OffloadTest, NvmeWithoutADirectoryIsAnErrorNamingTheFlag) {
  Gpt gpt(kTiny);
  TrainOptions o = GptOptions(1.0, 1);
  o.offload.optimizer = kNvme;
  auto p = CompileTiny(gpt, o);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("--nvme-dir"));
}

TEST(OffloadTest, TheDumpShowsFetchesWriteBacksAndOffloadedUpdates) {
  Gpt gpt(kTiny);
  TrainOptions o = GptOptions(1.0, 1);
  o.dump_graph = true;
  o.offload = Offload({.params = kNvme, .grads = kHost, .optimizer = kNvme});
  auto p = CompileTiny(gpt, o);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string& dump = (*p)->dump();
  EXPECT_THAT(dump, HasSubstr("== after schedule_offload =="));
  EXPECT_THAT(dump, HasSubstr("= fetch(%"));
  EXPECT_THAT(dump, HasSubstr("wte.weight @nvme"));
  EXPECT_THAT(dump, HasSubstr("write_back("));
  EXPECT_THAT(dump, HasSubstr("offloaded_update[adamw_update"));
  EXPECT_THAT((*p)->memory_report().ToString(), HasSubstr("nvme"));
}

}  // namespace
}  // namespace strata::graph
