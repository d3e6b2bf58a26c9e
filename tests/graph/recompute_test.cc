// Activation checkpointing (TrainOptions::recompute, graph/passes/recompute.cc): GPT and the CNN
// train bitwise as without it, running statistics included; the largest live set shrinks as
// derived below; the pass leaves a graph without blocks alone; the plan check passes with it.
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/models/mobilenet.h"
#include "graph/nn/layers.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

constexpr GptConfig kSmallGpt{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};

Tensor Ints(const Shape& shape, int32_t hi, uint32_t seed) {
  Tensor t = Tensor::Empty(shape, DType::kI32, DefaultCpuAllocator()).value();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = static_cast<int32_t>(rng() % hi);
  return t;
}

struct Options {
  bool recompute = false;
  bool check_plan = false;
  bool dump = false;
  int micro_batches = 1;
  double clip = 0;
};

TrainOptions ToTrainOptions(const Options& o) {
  TrainOptions t;
  t.recompute = o.recompute;
  t.check_plan = o.check_plan;
  t.dump_graph = o.dump;
  t.micro_batches = o.micro_batches;
  t.clip_grad_norm = o.clip;
  t.seed = 3;
  return t;
}

absl::StatusOr<std::unique_ptr<Program>> CompileGpt(Gpt& gpt, int64_t batch, const Options& o) {
  TrainOptions t = ToTrainOptions(o);
  t.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  t.schedule.max_lr = 1e-2;
  const int64_t steps = gpt.config().block_size;
  return Compile(gpt, {{"ids", Shape{batch, steps}, DType::kI32},
                       {"targets", Shape{batch, steps}, DType::kI32}},
                 [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                 t);
}

absl::StatusOr<std::unique_ptr<Program>> CompileNet(MobileNet& net, int64_t batch,
                                                    const Options& o) {
  TrainOptions t = ToTrainOptions(o);
  t.optimizer = OptimizerOptions::Sgd(/*momentum=*/0.9, /*weight_decay=*/5e-4);
  t.schedule.max_lr = 0.05;
  return Compile(net, {{"images", Shape{batch, 1, 28, 28}}, {"labels", Shape{batch}, DType::kI32}},
                 [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Forward(in[0]), in[1]); },
                 t);
}

// Every parameter and buffer (BatchNorm running statistics) of `model`, bit for bit.
void ExpectSameState(Module& model, const Program& a, const Program& b) {
  int compared = 0;
  model.ForEachParameter([&](const std::string& path, Parameter&) {
    const absl::StatusOr<Tensor> x = a.parameter(path), y = b.parameter(path);
    ASSERT_TRUE(x.ok() && y.ok()) << path;
    ASSERT_EQ(x->nbytes(), y->nbytes()) << path;
    EXPECT_EQ(std::memcmp(x->raw_data(), y->raw_data(), x->nbytes()), 0) << path;
    ++compared;
  });
  EXPECT_GT(compared, 0);
}

int CountRecomputed(const Graph& g) {
  int n = 0;
  for (const Node& node : g.nodes()) n += node.recomputed;
  return n;
}

// GPT with and without recompute: the same losses and parameters after every step, bit for bit,
// with updates scheduled among the copies (no clipping) and with accumulation and clipping.
TEST(RecomputeTest, GptTrainsBitwiseAsWithoutRecompute) {
  for (const Options& base : {Options{}, Options{.micro_batches = 2, .clip = 1.0}}) {
    Options with = base;
    with.recompute = true;
    Gpt plain_gpt(kSmallGpt), recompute_gpt(kSmallGpt);
    auto plain = CompileGpt(plain_gpt, 2, base);
    auto recomputed = CompileGpt(recompute_gpt, 2, with);
    ASSERT_TRUE(plain.ok()) << plain.status();
    ASSERT_TRUE(recomputed.ok()) << recomputed.status();
    EXPECT_EQ(CountRecomputed((*plain)->graph()), 0);
    EXPECT_GT(CountRecomputed((*recomputed)->graph()), 0);
    const Shape shape{2 * base.micro_batches, kSmallGpt.block_size};
    for (int s = 0; s < 3; ++s) {
      const Tensor ids = Ints(shape, kSmallGpt.vocab, 10 + s);
      const Tensor targets = Ints(shape, kSmallGpt.vocab, 20 + s);
      absl::StatusOr<StepStats> a = (*plain)->Step({ids, targets});
      absl::StatusOr<StepStats> b = (*recomputed)->Step({ids, targets});
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(a->loss, b->loss) << "step " << s << " micro_batches " << base.micro_batches;
      EXPECT_EQ(a->grad_norm, b->grad_norm) << "step " << s;
    }
    ExpectSameState(plain_gpt, **plain, **recomputed);
  }
}

// The CNN's BatchNorms run in training mode: the copies compute the batch statistics again but
// leave the running statistics to the forward, so they too are bitwise equal.
TEST(RecomputeTest, CnnTrainsBitwiseAsWithoutRecomputeRunningStatisticsIncluded) {
  MobileNet plain_net(MobileNetConfig{}), recompute_net(MobileNetConfig{});
  auto plain = CompileNet(plain_net, 2, {});
  auto recomputed = CompileNet(recompute_net, 2, {.recompute = true});
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(recomputed.ok()) << recomputed.status();
  int copied_batch_norms = 0;
  for (const Node& n : (*recomputed)->graph().nodes()) {
    if (!n.recomputed || n.op->kind() != OpKind::kBatchNorm) continue;
    ++copied_batch_norms;
    EXPECT_TRUE(n.op->MutatedInputs().empty());
  }
  EXPECT_GT(copied_batch_norms, 0);
  for (int s = 0; s < 3; ++s) {
    std::mt19937_64 rng(50 + s);
    const Tensor images = testing::RandomTensor(Shape{2, 1, 28, 28}, rng);
    const Tensor labels = Ints(Shape{2}, 10, 60 + s);
    absl::StatusOr<StepStats> a = (*plain)->Step({images, labels});
    absl::StatusOr<StepStats> b = (*recomputed)->Step({images, labels});
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->loss, b->loss) << "step " << s;
  }
  ExpectSameState(plain_net, **plain, **recomputed);
  // The running statistics did move (from 0), so equal means updated once per step in both.
  const absl::StatusOr<Tensor> running = (*recomputed)->parameter("blocks.1.expand.bn.running_mean");
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_NE(testing::ToDouble(*running)[0], 0.0);
  std::mt19937_64 rng(70);
  const Tensor images = testing::RandomTensor(Shape{2, 1, 28, 28}, rng);
  const Tensor labels = Ints(Shape{2}, 10, 71);
  absl::StatusOr<double> a = (*plain)->Evaluate({images, labels});
  absl::StatusOr<double> b = (*recomputed)->Evaluate({images, labels});
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ(*a, *b);
}

// The plan check (each arena value in its own block, used only inside its interval) accepts the
// recomputing plan and gives its losses; its allocator's high-water mark is the largest live set.
TEST(RecomputeTest, CheckedPlanPassesWithRecompute) {
  Gpt checked_gpt(kSmallGpt), planned_gpt(kSmallGpt);
  auto checked = CompileGpt(checked_gpt, 2, {.recompute = true, .check_plan = true});
  auto planned = CompileGpt(planned_gpt, 2, {.recompute = true});
  ASSERT_TRUE(checked.ok()) << checked.status();
  ASSERT_TRUE(planned.ok()) << planned.status();
  for (int s = 0; s < 2; ++s) {
    const Tensor ids = Ints(Shape{2, 16}, 64, 30 + s), targets = Ints(Shape{2, 16}, 64, 40 + s);
    absl::StatusOr<StepStats> c = (*checked)->Step({ids, targets});
    absl::StatusOr<StepStats> p = (*planned)->Step({ids, targets});
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(c->loss, p->loss);
    const MemoryPlan& plan = (*checked)->plan();
    EXPECT_EQ(c->peak_bytes[static_cast<int>(MemoryTier::kDevice)],
              plan.persistent_bytes + plan.live_peak_bytes);
  }
  MobileNet net(MobileNetConfig{});
  auto cnn = CompileNet(net, 2, {.recompute = true, .check_plan = true});
  ASSERT_TRUE(cnn.ok()) << cnn.status();
  std::mt19937_64 rng(5);
  const Tensor images = testing::RandomTensor(Shape{2, 1, 28, 28}, rng);
  absl::StatusOr<StepStats> s = (*cnn)->Step({images, Ints(Shape{2}, 10, 6)});
  ASSERT_TRUE(s.ok()) << s.status();
}

// The largest live set, derived: without recompute each GPT block adds all its saved activations
// to it (the live set grows by about 16 B*T*C floats a layer here); with recompute a block adds
// only its output, which the next block reads and keeps, B*T*C floats. So an L-layer model
// recomputing needs at most the one-layer model's live set plus (L - 1) * B*T*C*4 bytes, and
// for 4 layers that is at least 2x less than without recompute (8 layers: 4x).
TEST(RecomputeTest, LargestLiveSetGrowsByOneBlockInputPerLayer) {
  constexpr int64_t kBatch = 4;
  auto peak = [&](int layers, bool recompute) -> int64_t {
    Gpt gpt(GptConfig{.vocab = 64, .block_size = 32, .layers = layers, .width = 64, .heads = 4});
    auto p = CompileGpt(gpt, kBatch, {.recompute = recompute});
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return 0;
    EXPECT_EQ((*p)->plan().live_peak_bytes, (*p)->memory_report().live_peak_bytes);
    return (*p)->plan().live_peak_bytes;
  };
  const int64_t block_input = kBatch * 32 * 64 * sizeof(float);  // 64-byte aligned already
  const int64_t one_layer = peak(1, false);
  // The last block's activations are needed at once anyway; its recomputed copies may even free
  // a few bytes sooner (an in-place output where the original's input lived on).
  EXPECT_LE(peak(1, true), one_layer);
  EXPECT_GE(peak(1, true), one_layer * 9 / 10);
  for (int layers : {2, 4, 8}) {
    const int64_t without = peak(layers, false), with = peak(layers, true);
    EXPECT_LE(with, one_layer + (layers - 1) * block_input) << layers << " layers";
    EXPECT_GE(without, one_layer + (layers - 1) * 8 * block_input) << layers << " layers";
    if (layers >= 4) {
      EXPECT_GE(without, (layers / 2) * with) << layers << " layers";
    }
  }
}

// A graph with no block (no layer is a recompute boundary) comes out of the pass unchanged.
TEST(RecomputeTest, NoBoundaryLeavesTheGraphUnchanged) {
  nn::Sequential mlp;
  mlp.Append<nn::Linear>(12, 16);
  mlp.Append<nn::ReLU>();
  mlp.Append<nn::Linear>(16, 5);
  auto traced = TraceTrainingStep(
      mlp, {{"x", Shape{4, 12}}, {"y", Shape{4}, DType::kI32}},
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(mlp(in[0]), in[1]); },
      ToTrainOptions({}));
  ASSERT_TRUE(traced.ok()) << traced.status();
  for (const Node& n : traced->graph.nodes()) EXPECT_EQ(n.block, -1);
  const std::string before = traced->graph.ToString();
  const int values = traced->graph.num_values();
  ASSERT_TRUE(RecomputeActivations(traced->graph).ok());
  EXPECT_EQ(traced->graph.ToString(), before);
  EXPECT_EQ(traced->graph.num_values(), values);
}

// Boundaries nest into the outermost: a boundary layer inside another adds to its block.
TEST(RecomputeTest, NestedBoundariesFormOneBlockEach) {
  nn::Sequential net;
  auto* outer = net.Append<nn::Sequential>();
  auto* inner = outer->Append<nn::Linear>(8, 8);
  outer->Append<nn::ReLU>();
  auto* second = net.Append<nn::Linear>(8, 8);
  outer->SetRecomputeBoundary(true);
  inner->SetRecomputeBoundary(true);
  second->SetRecomputeBoundary(true);
  auto traced = TraceTrainingStep(
      net, {{"x", Shape{2, 8}}, {"y", Shape{2}, DType::kI32}},
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(net(in[0]), in[1]); },
      ToTrainOptions({}));
  ASSERT_TRUE(traced.ok()) << traced.status();
  std::vector<std::pair<std::string, int>> blocks;
  for (const Node& n : traced->graph.nodes()) {
    if (n.block >= 0 || n.op->kind() == OpKind::kCrossEntropy) {
      blocks.push_back({std::string(OpKindName(n.op->kind())), n.block});
    }
  }
  EXPECT_EQ(blocks, (std::vector<std::pair<std::string, int>>{
                        {"linear", 0}, {"relu", 0}, {"linear", 1}, {"cross_entropy", -1}}));
}

// --dump-graph has its own section for the pass, in which the copies are marked.
TEST(RecomputeTest, DumpShowsTheRecomputedNodes) {
  Gpt with_gpt(kSmallGpt), without_gpt(kSmallGpt);
  auto with = CompileGpt(with_gpt, 1, {.recompute = true, .dump = true});
  auto without = CompileGpt(without_gpt, 1, {.dump = true});
  ASSERT_TRUE(with.ok() && without.ok()) << with.status() << without.status();
  const std::string& dump = (*with)->dump();
  const size_t section = dump.find("== after recompute_activations ==");
  ASSERT_NE(section, std::string::npos);
  const size_t next = dump.find("== after schedule_updates ==", section);
  ASSERT_NE(next, std::string::npos);
  const std::string body = dump.substr(section, next - section);
  EXPECT_NE(body.find("= layer_norm[eps=1e-05](%"), std::string::npos) << body;
  EXPECT_NE(body.find("  # h.0.ln_1  (recomputed, block 0)"), std::string::npos) << body;
  EXPECT_NE(body.find("= causal_attention[heads=4](%"), std::string::npos) << body;
  EXPECT_NE(body.find("(recomputed, block 1)"), std::string::npos);
  EXPECT_EQ((*without)->dump().find("recompute"), std::string::npos);
}

}  // namespace
}  // namespace strata::graph
