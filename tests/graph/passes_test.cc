// Each compile pass on its own (graph/passes/passes.h): graphs traced from small modules exactly as
// Compile builds them, one pass applied, and what the pass promises checked on the result; then
// the programs built with and without a pass are run and compared.
#include "graph/passes/passes.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/nn/layers.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

using testing::ToDouble;

// Models and batches.

constexpr GptConfig kTinyGpt{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};

class Mlp : public Layer {
 public:
  Mlp() : fc1_(Add<nn::Linear>("fc1", 8, 16)), fc2_(Add<nn::Linear>("fc2", 16, 5)) {}
  Var Forward(Var x) override { return (*fc2_)(ops::Relu((*fc1_)(x))); }

 private:
  nn::Linear* fc1_;
  nn::Linear* fc2_;
};

// Two residual adds: fc1's output feeds only its add (fusable); fc2's output also feeds a ReLU
// (not fusable: its value must exist).
class ResidualMlp : public Layer {
 public:
  ResidualMlp()
      : fc1_(Add<nn::Linear>("fc1", 8, 8)), fc2_(Add<nn::Linear>("fc2", 8, 8)),
        head_(Add<nn::Linear>("head", 8, 5)) {}
  Var Forward(Var x) override {
    const Var r = ops::Add((*fc1_)(x), x);
    const Var h = (*fc2_)(r);
    return (*head_)(ops::Add(ops::Add(r, h), ops::Relu(h)));
  }

 private:
  nn::Linear* fc1_;
  nn::Linear* fc2_;
  nn::Linear* head_;
};

class TinyConv : public Layer {
 public:
  TinyConv()
      : conv_(Add<nn::Conv2d>("conv", 2, 4, nn::Conv2dOptions{.params = {.pad_h = 1, .pad_w = 1}})),
        fc_(Add<nn::Linear>("fc", 4, 3)) {}
  Var Forward(Var x) override { return (*fc_)(ops::GlobalAvgPool(ops::Relu((*conv_)(x)))); }

 private:
  nn::Conv2d* conv_;
  nn::Linear* fc_;
};

// The head's weight also weighs an earlier activation in the loss. WeightedSum gives its weights
// no gradient, so the weight's gradient is final (at the head's linear_grad) before the backward
// reads the weight again for d h: its update has to wait for that read.
class ReusedWeight : public Module {
 public:
  ReusedWeight()
      : fc_(Add<nn::Linear>("fc", 8, 4)),
        head_(AddParameter("head", Shape{6, 4}, Init::Normal(0, 0.5))) {}
  Var Loss(Var x, Var targets) {
    Var h = ops::Relu((*fc_)(x));
    Var probe = ops::WeightedSum(h, head_->var());
    return ops::Add(ops::CrossEntropy(ops::Linear(h, head_->var()), targets), probe);
  }

 private:
  nn::Linear* fc_;
  Parameter* head_;
};

// The logits themselves are the only parameter, so that the loss and its gradient have a closed
// form to compare with.
class FreeLogits : public Module {
 public:
  explicit FreeLogits(Shape shape) : logits_(AddParameter("logits", shape, Init::Normal(0, 2))) {}
  Var logits() const { return logits_->var(); }

 private:
  Parameter* logits_;
};

Tensor Ints(const Shape& shape, int32_t hi, uint32_t seed) {
  Tensor t = Tensor::Empty(shape, DType::kI32, DefaultCpuAllocator()).value();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = static_cast<int32_t>(rng() % hi);
  return t;
}

Tensor Floats(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return testing::RandomTensor(shape, rng);
}

// A model with its inputs, loss and one batch for them.
struct Case {
  std::string name;
  std::unique_ptr<Module> model;
  std::vector<InputSpec> inputs;
  LossFn loss;
  std::vector<Tensor> batch;
};

// A classifier model M on inputs x of shape `x` and `classes` targets, cross-entropy loss.
template <typename M>
Case ClassifierCase(std::string name, const Shape& x, int32_t classes, uint32_t seed) {
  auto model = std::make_unique<M>();
  M* m = model.get();
  const Shape targets{x[0]};
  return {std::move(name),
          std::move(model),
          {{"x", x, DType::kF32}, {"targets", targets, DType::kI32}},
          [m](absl::Span<const Var> in) { return ops::CrossEntropy((*m)(in[0]), in[1]); },
          {Floats(x, seed), Ints(targets, classes, seed + 1)}};
}

Case MlpCase() { return ClassifierCase<Mlp>("mlp", Shape{6, 8}, 5, 1); }
Case ResidualMlpCase() { return ClassifierCase<ResidualMlp>("residual mlp", Shape{6, 8}, 5, 11); }
Case ConvCase() { return ClassifierCase<TinyConv>("conv", Shape{2, 2, 6, 6}, 3, 3); }

Case ReusedWeightCase() {
  auto model = std::make_unique<ReusedWeight>();
  ReusedWeight* m = model.get();
  return {"reused weight",
          std::move(model),
          {{"x", Shape{6, 8}, DType::kF32}, {"targets", Shape{6}, DType::kI32}},
          [m](absl::Span<const Var> in) { return m->Loss(in[0], in[1]); },
          {Floats(Shape{6, 8}, 7), Ints(Shape{6}, 6, 8)}};
}

Case GptCase() {
  auto gpt = std::make_unique<Gpt>(kTinyGpt);
  Gpt* g = gpt.get();
  return {"gpt",
          std::move(gpt),
          {{"ids", Shape{2, 8}, DType::kI32}, {"targets", Shape{2, 8}, DType::kI32}},
          [g](absl::Span<const Var> in) { return ops::CrossEntropy(g->Forward(in[0]), in[1]); },
          {Ints(Shape{2, 8}, kTinyGpt.vocab, 5), Ints(Shape{2, 8}, kTinyGpt.vocab, 6)}};
}

// The graph Compile hands to the passes, built the same way (graph/compile.cc), so that each pass
// can be applied alone and a program built with any subset of them.

struct Options {
  bool adamw = true;  // else SGD with momentum
  double clip = 0;
  int micro_batches = 1;
  bool keep_gradients = false;
  double lr = 0.05;
};

TrainOptions ToTrainOptions(const Options& o) {
  TrainOptions t;
  t.optimizer =
      o.adamw ? OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1) : OptimizerOptions::Sgd(0.9, 0.01);
  t.schedule.max_lr = o.lr;
  t.clip_grad_norm = o.clip;
  t.micro_batches = o.micro_batches;
  t.keep_gradients = o.keep_gradients;
  t.seed = 9;
  return t;
}

// The training step before any pass, as Compile traces it.
using Traced = TrainingGraph;

Traced Trace(Case& c, const Options& o) {
  absl::StatusOr<TrainingGraph> t =
      TraceTrainingStep(*c.model, c.inputs, c.loss, ToTrainOptions(o));
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  return *std::move(t);
}

int TrainableCount(const Traced& t) {
  const auto& params = t.config.params;
  return static_cast<int>(std::count_if(params.begin(), params.end(),
                                        [](const auto& p) { return p.trainable; }));
}

enum PassBits {
  kFuse = 1, kSchedule = 2, kDeadCode = 4, kResidual = 8, kMasks = 16, kAllPasses = 31
};

std::unique_ptr<Program> Build(Traced t, int passes) {
  absl::Status s;
  if (passes & kFuse) s.Update(FuseCrossEntropy(t.graph));
  if (passes & kResidual) s.Update(FuseResidualAdd(t.graph));
  if (passes & kMasks) s.Update(SaveReluMasks(t.graph));
  if (passes & kSchedule) s.Update(ScheduleUpdates(t.graph));
  if (passes & kDeadCode) s.Update(EliminateDeadCode(t.graph));
  EXPECT_TRUE(s.ok()) << s;
  absl::StatusOr<MemoryPlan> plan = PlanMemory(t.graph, {.num_threads = t.config.num_threads});
  EXPECT_TRUE(plan.ok()) << plan.status();
  if (!plan.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<Program>> p =
      Program::Create(std::move(t.graph), *std::move(plan), std::move(t.config));
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

// Node helpers.

int Count(const Graph& g, OpKind kind) {
  return static_cast<int>(std::count_if(g.nodes().begin(), g.nodes().end(),
                                        [&](const Node& n) { return n.op->kind() == kind; }));
}

bool IsUpdate(const Node& n) {
  return n.op->kind() == OpKind::kAdamWUpdate || n.op->kind() == OpKind::kSgdUpdate;
}

bool Touches(const Node& n, ValueId v) {
  return std::find(n.inputs.begin(), n.inputs.end(), v) != n.inputs.end() ||
         std::find(n.outputs.begin(), n.outputs.end(), v) != n.outputs.end();
}

// What identifies a node across passes, and where it runs.
using NodeKey = std::tuple<const Op*, std::vector<ValueId>, std::vector<ValueId>, Phase>;
std::vector<NodeKey> Keys(const Graph& g, bool skip_updates = false) {
  std::vector<NodeKey> keys;
  for (const Node& n : g.nodes()) {
    if (skip_updates && IsUpdate(n)) continue;
    keys.emplace_back(n.op.get(), n.inputs, n.outputs, skip_updates ? Phase::kMicroStep : n.phase);
  }
  return keys;
}

std::vector<std::string> OpNames(const Graph& g) {
  std::vector<std::string> names;
  for (const Node& n : g.nodes()) names.push_back(n.op->name());
  return names;
}

void ExpectSameParameters(const Program& a, const Program& b, double rtol) {
  ASSERT_EQ(a.parameters().size(), b.parameters().size());
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    ASSERT_EQ(a.parameters()[i].first, b.parameters()[i].first);
    testing::ExpectClose(b.parameters()[i].second, ToDouble(a.parameters()[i].second), rtol, 1e-7,
                         a.parameters()[i].first);
  }
}

// FuseCrossEntropy

TEST(FuseCrossEntropyTest, LeavesOneFusedNodeThatWritesTheLoss) {
  for (auto make : {MlpCase, GptCase}) {
    Case c = make();
    SCOPED_TRACE(c.name);
    Traced t = Trace(c, {});
    Graph& g = t.graph;
    ASSERT_EQ(Count(g, OpKind::kCrossEntropy), 1);
    ASSERT_EQ(Count(g, OpKind::kCrossEntropyWithGrad), 1);
    const size_t before = g.nodes().size();
    const ValueId logits = std::find_if(g.nodes().begin(), g.nodes().end(), [](const Node& n) {
                             return n.op->kind() == OpKind::kCrossEntropy;
                           })->inputs[0];
    ASSERT_TRUE(FuseCrossEntropy(g).ok());

    EXPECT_EQ(Count(g, OpKind::kCrossEntropy), 0);
    ASSERT_EQ(Count(g, OpKind::kCrossEntropyWithGrad), 1);
    EXPECT_EQ(g.nodes().size(), before - 1);
    const Node& fused = *std::find_if(g.nodes().begin(), g.nodes().end(), [](const Node& n) {
      return n.op->kind() == OpKind::kCrossEntropyWithGrad;
    });
    EXPECT_EQ(fused.outputs[0], t.config.loss);
    EXPECT_EQ(fused.inputs[0], logits);
    // Every node that writes the loss is gone but the fused one, and the logits are read once.
    int writers = 0, readers = 0;
    for (const Node& n : g.nodes()) {
      writers += std::count(n.outputs.begin(), n.outputs.end(), t.config.loss);
      readers += std::count(n.inputs.begin(), n.inputs.end(), logits);
    }
    EXPECT_EQ(writers, 1);
    EXPECT_EQ(readers, 1);

    // A second run finds nothing left to fuse.
    const std::vector<NodeKey> fused_keys = Keys(g);
    ASSERT_TRUE(FuseCrossEntropy(g).ok());
    EXPECT_EQ(Keys(g), fused_keys);
  }
}

TEST(FuseCrossEntropyTest, KeepsTheForwardLossWhenAnotherNodeReadsIt) {
  Case c = MlpCase();
  Mlp* m = static_cast<Mlp*>(c.model.get());
  // The loss is the cross-entropy added to itself: the forward value is read, so it must stay.
  c.loss = [m](absl::Span<const Var> in) {
    Var ce = ops::CrossEntropy((*m)(in[0]), in[1]);
    return ops::Add(ce, ce);
  };
  Traced t = Trace(c, {});
  const std::vector<NodeKey> before = Keys(t.graph);
  ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
  EXPECT_EQ(Keys(t.graph), before);
  EXPECT_EQ(Count(t.graph, OpKind::kCrossEntropy), 1);
}

// The loss and every gradient of the fused program equal those of the same graph run unfused.
TEST(FuseCrossEntropyTest, LossAndGradientsEqualTheUnfusedGraphs) {
  for (auto make : {MlpCase, GptCase}) {
    Case c = make();
    SCOPED_TRACE(c.name);
    Options o{.keep_gradients = true};
    std::unique_ptr<Program> fused = Build(Trace(c, o), kAllPasses);
    std::unique_ptr<Program> unfused = Build(Trace(c, o), kAllPasses & ~kFuse);
    ASSERT_NE(fused, nullptr);
    ASSERT_NE(unfused, nullptr);
    EXPECT_EQ(Count(unfused->graph(), OpKind::kCrossEntropy), 1);
    EXPECT_EQ(Count(fused->graph(), OpKind::kCrossEntropy), 0);
    for (int step = 0; step < 2; ++step) {
      absl::StatusOr<StepStats> a = fused->Step(c.batch), b = unfused->Step(c.batch);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
      EXPECT_GT(a->loss, 0);
      EXPECT_NEAR(a->loss, b->loss, 1e-6 * b->loss) << "step " << step;
      ASSERT_EQ(fused->gradients().size(), unfused->gradients().size());
      for (size_t i = 0; i < fused->gradients().size(); ++i) {
        testing::ExpectClose(fused->gradients()[i].second, ToDouble(unfused->gradients()[i].second),
                             1e-5, 1e-8, fused->gradients()[i].first);
      }
    }
    ExpectSameParameters(*unfused, *fused, 1e-5);
  }
}

// FuseResidualAdd: add(linear(x), r) becomes linear_residual(x, w, b, r) when nothing else reads
// the linear output; the add's output value stays, the linear's output disappears. The same for
// add(layer_norm_grad.dx, g) in the backward.
TEST(FuseResidualAddTest, FusesOnlyLinearOutputsThatFeedNothingElse) {
  Case c = ResidualMlpCase();
  Traced t = Trace(c, {});
  const int adds = Count(t.graph, OpKind::kAdd), linears = Count(t.graph, OpKind::kLinear);
  ASSERT_TRUE(FuseResidualAdd(t.graph).ok());
  EXPECT_EQ(Count(t.graph, OpKind::kLinearResidual), 1);
  EXPECT_EQ(Count(t.graph, OpKind::kLinear), linears - 1);
  EXPECT_EQ(Count(t.graph, OpKind::kAdd), adds - 1);
  for (const Node& n : t.graph.nodes()) {
    if (n.op->kind() != OpKind::kLinearResidual) continue;
    EXPECT_EQ(n.scope, "fc1");
    ASSERT_EQ(n.inputs.size(), 4u);  // x, w, b, r
    EXPECT_EQ(t.graph.value(n.inputs[1]).name, "fc1.weight");
    EXPECT_EQ(n.inputs[3], n.inputs[0]);  // r = x: fc1(x) + x
  }
  // Idempotent.
  const std::vector<NodeKey> once = Keys(t.graph);
  ASSERT_TRUE(FuseResidualAdd(t.graph).ok());
  EXPECT_EQ(Keys(t.graph), once);
}

TEST(FuseResidualAddTest, EveryProjectionOfAGptBlockIsFused) {
  Case c = GptCase();
  std::unique_ptr<Program> p = Build(Trace(c, {}), kAllPasses);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(Count(p->graph(), OpKind::kLinearResidual), 2 * kTinyGpt.layers);
  // And in the backward, the gradient of the residual stream at each block's two layer norms.
  EXPECT_EQ(Count(p->graph(), OpKind::kLayerNormGradResidual), 2 * kTinyGpt.layers);
  EXPECT_EQ(Count(p->graph(), OpKind::kLayerNormGrad), 1);  // ln_f: the stream ends there
}

// The fused program computes what the unfused one does, up to the order of two float additions:
// the gradients of the first step, and the losses of the following steps.
TEST(FuseResidualAddTest, LossesAndGradientsEqualTheUnfusedGraphs) {
  for (auto make : {ResidualMlpCase, GptCase}) {
    Case c = make();
    SCOPED_TRACE(c.name);
    Options o{.keep_gradients = true};
    std::unique_ptr<Program> fused = Build(Trace(c, o), kAllPasses);
    std::unique_ptr<Program> unfused = Build(Trace(c, o), kAllPasses & ~kResidual);
    ASSERT_NE(fused, nullptr);
    ASSERT_NE(unfused, nullptr);
    EXPECT_GT(Count(fused->graph(), OpKind::kLinearResidual), 0);
    EXPECT_EQ(Count(unfused->graph(), OpKind::kLinearResidual), 0);
    EXPECT_EQ(Count(unfused->graph(), OpKind::kLayerNormGradResidual), 0);
    for (int step = 0; step < 3; ++step) {
      absl::StatusOr<StepStats> a = fused->Step(c.batch), b = unfused->Step(c.batch);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
      EXPECT_NEAR(a->loss, b->loss, 1e-5 * b->loss) << "step " << step;
      if (step > 0) continue;
      // Absolute slack for gradients that are zero analytically (the key bias) and rounding noise.
      ASSERT_EQ(fused->gradients().size(), unfused->gradients().size());
      for (size_t i = 0; i < fused->gradients().size(); ++i) {
        testing::ExpectClose(fused->gradients()[i].second, ToDouble(unfused->gradients()[i].second),
                             1e-4, 1e-6, fused->gradients()[i].first);
      }
    }
  }
}

// Note [relu masks]: a relu's gradient from a u8 mask of its input gives the same bits as from
// the input itself, and the input then dies at the relu, which writes over it: the planned peak
// drops by the input's bytes less the mask's.
TEST(SaveReluMasksTest, GradientsKeepTheirBitsAndTheInputDiesAtTheActivation) {
  for (auto make : {MlpCase, ConvCase}) {
    Case c = make();
    SCOPED_TRACE(c.name);
    Options o{.keep_gradients = true};
    std::unique_ptr<Program> masked = Build(Trace(c, o), kAllPasses);
    std::unique_ptr<Program> unmasked = Build(Trace(c, o), kAllPasses & ~kMasks);
    ASSERT_NE(masked, nullptr);
    ASSERT_NE(unmasked, nullptr);
    const Graph& g = masked->graph();
    EXPECT_EQ(Count(g, OpKind::kReluMask), 1);
    EXPECT_EQ(Count(g, OpKind::kMaskedGrad), 1);
    EXPECT_EQ(Count(g, OpKind::kReluGrad), 0);
    EXPECT_EQ(Count(unmasked->graph(), OpKind::kReluGrad), 1);
    // The mask is made right before the relu, which is x's last reader and writes over it.
    int relu = -1;
    for (size_t i = 0; i < g.nodes().size(); ++i) {
      if (g.nodes()[i].op->kind() == OpKind::kRelu) relu = static_cast<int>(i);
    }
    ASSERT_GT(relu, 0);
    const ValueId x = g.nodes()[relu].inputs[0];
    EXPECT_EQ(g.nodes()[relu - 1].op->kind(), OpKind::kReluMask);
    EXPECT_EQ(g.value(g.nodes()[relu - 1].outputs[0]).type.dtype, DType::kU8);
    for (size_t i = relu + 1; i < g.nodes().size(); ++i) {
      EXPECT_FALSE(Touches(g.nodes()[i], x))
          << g.nodes()[i].op->name() << " reads the relu's input";
    }
    EXPECT_NE(masked->plan().alias[g.nodes()[relu].outputs[0]], kNoValue);
    // The MLP's peak holds the relu's input; the convolution's is elsewhere (its workspace).
    if (c.name == "mlp") {
      EXPECT_LT(masked->plan().live_peak_bytes, unmasked->plan().live_peak_bytes);
    } else {
      EXPECT_LE(masked->plan().live_peak_bytes, unmasked->plan().live_peak_bytes);
    }
    for (int step = 0; step < 3; ++step) {
      absl::StatusOr<StepStats> a = masked->Step(c.batch), b = unmasked->Step(c.batch);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
      EXPECT_EQ(a->loss, b->loss) << "step " << step;
      if (step > 0) continue;
      ASSERT_EQ(masked->gradients().size(), unmasked->gradients().size());
      for (size_t i = 0; i < masked->gradients().size(); ++i) {
        const Tensor& ga = masked->gradients()[i].second;
        const Tensor& gb = unmasked->gradients()[i].second;
        ASSERT_EQ(ga.numel(), gb.numel());
        for (int64_t k = 0; k < ga.numel(); ++k) {
          ASSERT_EQ(ga.data<float>()[k], gb.data<float>()[k]) << masked->gradients()[i].first;
        }
      }
    }
  }
}

// Softmax cross-entropy on free logits in double precision: the mean loss over the rows whose
// target is not -100 and, per row, (softmax - one_hot) / count, scaled by the loss seed.
struct Reference {
  double loss = 0;
  std::vector<double> dlogits;
};
Reference SoftmaxCrossEntropy(const std::vector<double>& x, const int32_t* targets, int64_t rows,
                              int64_t v, double seed) {
  Reference r;
  r.dlogits.assign(x.size(), 0.0);
  int64_t count = 0;
  for (int64_t i = 0; i < rows; ++i) count += targets[i] != -100;
  for (int64_t i = 0; i < rows; ++i) {
    if (targets[i] == -100) continue;
    const double* row = x.data() + i * v;
    const double m = *std::max_element(row, row + v);
    double sum = 0;
    for (int64_t j = 0; j < v; ++j) sum += std::exp(row[j] - m);
    r.loss += (std::log(sum) + m - row[targets[i]]) / count;
    for (int64_t j = 0; j < v; ++j) {
      r.dlogits[i * v + j] = seed * (std::exp(row[j] - m) / sum - (j == targets[i])) / count;
    }
  }
  return r;
}

// The fused node computes the loss from the logits alone (the seed scales only the gradient):
// checked against the reference through plain SGD (lr 1), whose step is minus the gradient.
TEST(FuseCrossEntropyTest, FusedLossAndGradientMatchADoublePrecisionReference) {
  constexpr int64_t kRows = 5, kClasses = 7;
  for (int k : {1, 2}) {
    SCOPED_TRACE(absl::StrCat(k, " micro-batches"));
    FreeLogits model(Shape{kRows, kClasses});
    TrainOptions o;
    o.optimizer = OptimizerOptions::Sgd(0, 0);
    o.schedule.max_lr = 1.0;
    o.micro_batches = k;
    auto program = Compile(
        model, {{"targets", Shape{kRows}, DType::kI32}},
        [&](absl::Span<const Var> in) { return ops::CrossEntropy(model.logits(), in[0]); }, o);
    ASSERT_TRUE(program.ok()) << program.status();
    ASSERT_EQ(Count((*program)->graph(), OpKind::kCrossEntropy), 0);
    ASSERT_EQ(Count((*program)->graph(), OpKind::kCrossEntropyWithGrad), 1);

    Tensor targets = Ints(Shape{k * kRows}, kClasses, 10 + k);
    targets.data<int32_t>()[1] = -100;  // ignored: neither in the mean nor in the gradient
    const std::vector<double> before = ToDouble((*program)->parameter("logits").value());
    absl::StatusOr<StepStats> s = (*program)->Step({targets});
    ASSERT_TRUE(s.ok()) << s.status();
    const std::vector<double> after = ToDouble((*program)->parameter("logits").value());

    double loss = 0;
    std::vector<double> grad(before.size(), 0.0);
    for (int i = 0; i < k; ++i) {
      const Reference r = SoftmaxCrossEntropy(before, targets.data<int32_t>() + i * kRows, kRows,
                                              kClasses, 1.0 / k);
      loss += r.loss / k;
      for (size_t j = 0; j < grad.size(); ++j) grad[j] += r.dlogits[j];
    }
    EXPECT_NEAR(s->loss, loss, 1e-5 * loss);
    std::vector<double> step(before.size());
    for (size_t j = 0; j < step.size(); ++j) step[j] = before[j] - after[j];
    testing::ExpectClose(step, grad, 1e-4, 2e-6, "logits gradient");
  }
}

// A second cross-entropy over the same logits and targets, kept as an output, must not take the
// loss's value away: one fused node can write only one of them.
TEST(FuseCrossEntropyTest, ACopyOfTheLossKeptAsAnOutputLeavesBothWritten) {
  constexpr int64_t kRows = 4, kClasses = 6;
  for (bool copy_first : {false, true}) {
    SCOPED_TRACE(copy_first ? "copy traced first" : "copy traced second");
    FreeLogits model(Shape{kRows, kClasses});
    TrainOptions o;
    o.optimizer = OptimizerOptions::Sgd(0, 0);
    o.schedule.max_lr = 0;
    ValueId copy = kNoValue;
    auto program = Compile(
        model, {{"targets", Shape{kRows}, DType::kI32}},
        [&](absl::Span<const Var> in) {
          Var a = ops::CrossEntropy(model.logits(), in[0]);
          Var b = ops::CrossEntropy(model.logits(), in[0]);
          Var kept = copy_first ? a : b;
          kept.tracer()->MarkOutput(kept, "ce_copy");
          copy = kept.id();
          return copy_first ? b : a;
        },
        o);
    ASSERT_TRUE(program.ok()) << program.status();
    const Tensor targets = Ints(Shape{kRows}, kClasses, 3);
    const Reference r = SoftmaxCrossEntropy(ToDouble((*program)->parameter("logits").value()),
                                            targets.data<int32_t>(), kRows, kClasses, 1.0);
    absl::StatusOr<StepStats> s = (*program)->Step({targets});
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_NEAR(s->loss, r.loss, 1e-5 * r.loss);
    EXPECT_NEAR((*program)->value(copy)->data<float>()[0], r.loss, 1e-5 * r.loss);
  }
}

// ScheduleUpdates

// Every update runs right after the last node it depends on (the gradient's writer, or a node
// that reads the parameter or the gradient): nothing else waits in between, and nothing after it
// touches what it writes. Returns how many updates run before some other node.
int ExpectUpdatesRightAfterTheirDependencies(const Graph& g) {
  const std::vector<Node>& nodes = g.nodes();
  int moved = 0, updates = 0;
  for (int p = 0; p < static_cast<int>(nodes.size()); ++p) {
    if (!IsUpdate(nodes[p])) continue;
    ++updates;
    const std::string& param = g.value(nodes[p].inputs[0]).name;
    int last = -1, grad_writer = -1;
    for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
      if (i == p || IsUpdate(nodes[i])) continue;
      for (ValueId v : nodes[p].inputs) {
        if (Touches(nodes[i], v)) last = i;
      }
      if (std::count(nodes[i].outputs.begin(), nodes[i].outputs.end(), nodes[p].inputs[1])) {
        grad_writer = i;
      }
    }
    EXPECT_GE(grad_writer, 0) << param;
    EXPECT_LT(grad_writer, p) << param << ": the update runs before its gradient is written";
    EXPECT_LT(last, p) << param << ": node " << last << " (" << nodes[last].op->name()
                       << ") touches the parameter or gradient after the update";
    for (int i = last + 1; i < p; ++i) {
      EXPECT_TRUE(IsUpdate(nodes[i])) << param << ": node " << i << " (" << nodes[i].op->name()
                                      << ") runs between its last dependency and its update";
    }
    EXPECT_EQ(nodes[p].phase, Phase::kMicroStep) << param;
    moved +=
        std::any_of(nodes.begin() + p, nodes.end(), [](const Node& n) { return !IsUpdate(n); });
  }
  EXPECT_GT(updates, 0);
  return moved;
}

TEST(ScheduleUpdatesTest, EachUpdateRunsRightAfterTheLastNodeItDependsOn) {
  for (bool adamw : {true, false}) {
    for (auto make : {MlpCase, ConvCase, ReusedWeightCase, GptCase}) {
      Case c = make();
      SCOPED_TRACE(c.name + (adamw ? " adamw" : " sgd"));
      Traced t = Trace(c, {.adamw = adamw});
      ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
      ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
      // Without the pass every update would wait for the whole backward: some must have moved.
      EXPECT_GT(ExpectUpdatesRightAfterTheirDependencies(t.graph), 0);
      EXPECT_EQ(Count(t.graph, adamw ? OpKind::kAdamWUpdate : OpKind::kSgdUpdate), TrainableCount(t));
    }
  }
}

TEST(ScheduleUpdatesTest, KeepsTheOrderOfEveryOtherNode) {
  for (auto make : {MlpCase, GptCase}) {
    Case c = make();
    SCOPED_TRACE(c.name);
    Traced t = Trace(c, {});
    const std::vector<NodeKey> rest = Keys(t.graph, /*skip_updates=*/true);
    const size_t size = t.graph.nodes().size();
    ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
    EXPECT_EQ(Keys(t.graph, /*skip_updates=*/true), rest);
    EXPECT_EQ(t.graph.nodes().size(), size);
  }
}

TEST(ScheduleUpdatesTest, RunningTwiceChangesNothing) {
  for (auto make : {MlpCase, GptCase}) {
    Case c = make();
    SCOPED_TRACE(c.name);
    Traced t = Trace(c, {});
    ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
    const std::vector<NodeKey> once = Keys(t.graph);
    ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
    EXPECT_EQ(Keys(t.graph), once);
  }
}

// Clipping needs every gradient, and accumulation updates only after the last micro-batch: the
// updates stay in the update phase, after the norm and after every accumulation.
TEST(ScheduleUpdatesTest, AccumulationKeepsUpdatesAfterTheSums) {
  for (Options o : {Options{.micro_batches = 2}, Options{.clip = 1.0, .micro_batches = 2}}) {
    SCOPED_TRACE(absl::StrCat("clip ", o.clip, ", micro-batches ", o.micro_batches));
    Case c = GptCase();
    Traced t = Trace(c, o);
    ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
    const std::vector<NodeKey> before = Keys(t.graph);
    ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
    EXPECT_EQ(Keys(t.graph), before);
    const std::vector<Node>& nodes = t.graph.nodes();
    int must_follow = -1;  // the global norm or the last accumulation
    for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
      const OpKind kind = nodes[i].op->kind();
      if (kind == OpKind::kGlobalGradNorm || kind == OpKind::kAccumulate) must_follow = i;
    }
    ASSERT_GE(must_follow, 0);
    for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
      if (!IsUpdate(nodes[i])) continue;
      EXPECT_GT(i, must_follow);
      EXPECT_EQ(nodes[i].phase, Phase::kUpdate);
    }
  }
}

// With clipping (one micro-batch) each gradient's norm moves up to right after the node that
// makes the gradient final, and every update still follows the global norm.
TEST(ScheduleUpdatesTest, ClippingMovesEachNormToItsGradientAndUpdatesAfterTheGlobalNorm) {
  Case c = GptCase();
  Traced t = Trace(c, Options{.clip = 1.0});
  ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
  ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
  const std::vector<Node>& nodes = t.graph.nodes();
  int global = -1, norms = 0;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (nodes[i].op->kind() == OpKind::kGlobalGradNorm) global = i;
  }
  ASSERT_GE(global, 0);
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (IsUpdate(nodes[i])) {
      EXPECT_GT(i, global);
    }
    if (nodes[i].op->kind() != OpKind::kGradNorm) continue;
    ++norms;
    EXPECT_LT(i, global);
    EXPECT_EQ(nodes[i].phase, Phase::kMicroStep);
    // The node just before it (or a norm right before it) wrote or read its gradient last.
    const ValueId g = nodes[i].inputs[0];
    int last_touch = -1;
    for (int j = 0; j < i; ++j) {
      for (ValueId v : nodes[j].outputs) last_touch = v == g ? j : last_touch;
      for (ValueId v : nodes[j].inputs) last_touch = v == g ? j : last_touch;
    }
    ASSERT_GE(last_touch, 0);
    for (int j = last_touch + 1; j < i; ++j) {
      EXPECT_TRUE(nodes[j].op->kind() == OpKind::kGradNorm) << nodes[j].op->name();
    }
  }
  int trainable = 0;
  c.model->ForEachParameter([&](const std::string&, Parameter& p) { trainable += p.trainable(); });
  EXPECT_EQ(norms, trainable);
}

// Updating a parameter early must not change what any node reads: a few steps with and without
// the pass leave the same losses and parameters.
TEST(ScheduleUpdatesTest, ScheduledProgramTrainsLikeTheUnscheduledOne) {
  for (auto make : {ConvCase, ReusedWeightCase, GptCase}) {
    Case c = make();
    SCOPED_TRACE(c.name);
    std::unique_ptr<Program> scheduled = Build(Trace(c, {}), kAllPasses);
    std::unique_ptr<Program> unscheduled = Build(Trace(c, {}), kAllPasses & ~kSchedule);
    ASSERT_NE(scheduled, nullptr);
    ASSERT_NE(unscheduled, nullptr);
    ASSERT_NE(OpNames(scheduled->graph()), OpNames(unscheduled->graph()));
    for (int step = 0; step < 3; ++step) {
      absl::StatusOr<StepStats> a = scheduled->Step(c.batch), b = unscheduled->Step(c.batch);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
      EXPECT_NEAR(a->loss, b->loss, 1e-6 * b->loss) << "step " << step;
    }
    ExpectSameParameters(*unscheduled, *scheduled, 1e-5);
  }
}

// BucketAllReduces

// The traced step with the all_reduce per gradient that Compile adds in a data-parallel run
// (Note [data parallel]): before the update phase's first node, one per update's gradient.
void AddAllReduces(Traced& t) {
  std::vector<Node>& nodes = t.graph.mutable_nodes();
  auto first = std::find_if(nodes.begin(), nodes.end(), [](const Node& n) { return IsUpdate(n); });
  std::vector<Node> reduces;
  for (auto it = first; it != nodes.end(); ++it) {
    if (!IsUpdate(*it)) continue;
    reduces.push_back({ops::AllReduceOp(), {it->inputs[1]}, {}, it->scope});
    reduces.back().phase = Phase::kUpdate;
  }
  nodes.insert(first, reduces.begin(), reduces.end());
}

// Where each value is last written before node `before`.
int LastWrite(const Graph& g, ValueId v, int before) {
  for (int i = before - 1; i >= 0; --i) {
    const Node& n = g.nodes()[i];
    if (std::find(n.outputs.begin(), n.outputs.end(), v) != n.outputs.end()) return i;
  }
  return -1;
}

TEST(BucketAllReducesTest, SmallGradientsGoInBucketsInTheOrderTheyAreFinal) {
  Case c = GptCase();
  Traced t = Trace(c, {});
  AddAllReduces(t);
  const int gradients = Count(t.graph, OpKind::kAllReduce);
  ASSERT_EQ(gradients, TrainableCount(t));
  // Below 600 elements (the biases and norms of the tiny GPT), buckets of at most 1 KiB.
  const int64_t small = 600, limit = 1024;
  int small_count = 0;
  for (const Node& n : t.graph.nodes()) {
    if (n.op->kind() == OpKind::kAllReduce && t.graph.value(n.inputs[0]).type.shape.numel() < small) {
      ++small_count;
    }
  }
  ASSERT_GT(small_count, 4);
  ASSERT_LT(small_count, gradients);
  ASSERT_TRUE(BucketAllReduces(t.graph, small, limit).ok());
  std::set<ValueId> seen;
  int buckets = 0;
  for (int i = 0; i < static_cast<int>(t.graph.nodes().size()); ++i) {
    const Node& n = t.graph.nodes()[i];
    if (n.op->kind() != OpKind::kAllReduce) continue;
    int64_t bytes = 0, writer = -1;
    for (ValueId v : n.inputs) {
      EXPECT_TRUE(seen.insert(v).second) << "gradient " << v << " reduced twice";
      bytes += static_cast<int64_t>(t.graph.value(v).type.nbytes());
      const int w = LastWrite(t.graph, v, i);
      EXPECT_GE(w, writer) << "members out of the order they are final";
      writer = w;
    }
    if (n.inputs.size() == 1 && t.graph.value(n.inputs[0]).type.shape.numel() >= small) continue;
    EXPECT_TRUE(bytes <= limit || n.inputs.size() == 1) << bytes << " B in a bucket";
    ++buckets;
  }
  EXPECT_EQ(static_cast<int>(seen.size()), gradients);
  EXPECT_GT(buckets, 1);
  EXPECT_LT(buckets, small_count);

  // Scheduled, each bucket follows the last of its gradients and precedes its members' updates.
  ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
  ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
  const std::vector<Node>& nodes = t.graph.nodes();
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (nodes[i].op->kind() != OpKind::kAllReduce || nodes[i].inputs.size() < 2) continue;
    int last = -1;
    for (ValueId v : nodes[i].inputs) last = std::max(last, LastWrite(t.graph, v, i));
    ASSERT_GE(last, 0);
    // Only nodes that moved there too (collectives, updates) lie between: it waits for its last
    // gradient and no more.
    for (int k = last + 1; k < i; ++k) {
      const OpKind kind = nodes[k].op->kind();
      EXPECT_TRUE(IsUpdate(nodes[k]) || kind == OpKind::kAllReduce) << nodes[k].op->name();
    }
    for (int k = 0; k < i; ++k) {
      if (IsUpdate(nodes[k])) {
        EXPECT_EQ(std::count(nodes[i].inputs.begin(), nodes[i].inputs.end(), nodes[k].inputs[1]), 0)
            << "an update before its gradient's all_reduce";
      }
    }
  }
}

TEST(BucketAllReducesTest, ZeroBytesLeavesOneAllReducePerGradientAndTrainingIsUnchanged) {
  Case a = GptCase(), b = GptCase();
  Traced one = Trace(a, {}), bucketed = Trace(b, {});
  AddAllReduces(one);
  AddAllReduces(bucketed);
  const std::string before = one.graph.ToString();
  ASSERT_TRUE(BucketAllReduces(one.graph, 1 << 20, 0).ok());
  EXPECT_EQ(one.graph.ToString(), before);
  ASSERT_TRUE(BucketAllReduces(bucketed.graph, 1 << 20, 1 << 20).ok());
  EXPECT_EQ(Count(bucketed.graph, OpKind::kAllReduce), 1);
  // In a world of one an all_reduce changes nothing: the same steps, bucketed or not.
  std::unique_ptr<Program> p = Build(std::move(one), kAllPasses);
  std::unique_ptr<Program> q = Build(std::move(bucketed), kAllPasses);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  for (int step = 0; step < 3; ++step) {
    absl::StatusOr<StepStats> x = p->Step(a.batch), y = q->Step(a.batch);
    ASSERT_TRUE(x.ok() && y.ok()) << x.status() << y.status();
    EXPECT_EQ(x->loss, y->loss) << "step " << step;
  }
}

// The helper above builds the graph the way Compile does: with every pass it is the same program.
TEST(PassHarnessTest, TracesTheGraphCompileBuilds) {
  Case a = GptCase(), b = GptCase();
  std::unique_ptr<Program> built = Build(Trace(a, {}), kAllPasses);
  auto compiled = Compile(*b.model, b.inputs, b.loss, ToTrainOptions({}));
  ASSERT_NE(built, nullptr);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ(built->graph().ToString(), (*compiled)->graph().ToString());
}

// EliminateDeadCode

struct SmallGraph {
  Graph g;
  Tracer t{g};
  Var Input(const Shape& s, const std::string& name, ValueRole role = ValueRole::kInput) {
    return t.NewValue({s, DType::kF32}, role, name);
  }
};

TEST(EliminateDeadCodeTest, RemovesUnreadNodesTransitively) {
  SmallGraph s;
  Var x = s.Input(Shape{4, 8}, "x"), w = s.Input(Shape{6, 8}, "w", ValueRole::kParameter);
  Var probe = s.Input(Shape{4, 6}, "probe");
  Var h = ops::Linear(x, w);
  Var dead = ops::Relu(ops::Gelu(h));  // only read by each other
  ops::Add(dead, h);                   // reads a live value, read by nobody
  Var live = ops::Relu(h);
  Var loss = ops::WeightedSum(live, probe);
  s.t.MarkOutput(loss, "loss");
  ASSERT_TRUE(s.t.status().ok()) << s.t.status();
  ASSERT_EQ(s.g.nodes().size(), 6u);

  ASSERT_TRUE(EliminateDeadCode(s.g).ok());
  EXPECT_THAT(OpNames(s.g), ::testing::ElementsAre("linear", "relu", "weighted_sum"));
  EXPECT_EQ(s.g.nodes()[1].outputs[0], live.id());
  EXPECT_EQ(s.g.nodes()[2].outputs[0], loss.id());
}

TEST(EliminateDeadCodeTest, KeepsInPlaceWritersAndOutputsWithWhatTheyRead) {
  SmallGraph s;
  Var w = s.Input(Shape{6, 8}, "w", ValueRole::kParameter);
  Var g_in = s.Input(Shape{6, 8}, "g_in");
  Var acc = s.Input(Shape{6, 8}, "acc", ValueRole::kOptimizerState);
  Var grad = ops::Gelu(g_in);  // read only by the update
  s.g.AddNode(ops::SgdUpdateOp(0, 0, false, 0), {w.id(), grad.id()}, {});
  Var part = ops::Relu(ops::Relu(g_in));  // read only by the accumulation
  s.g.AddNode(ops::AccumulateOp(), {acc.id(), part.id()}, {});
  Var shown = ops::Gelu(ops::Add(g_in, w));  // read by nobody, but an output
  s.t.MarkOutput(shown, "shown");
  ops::Relu(shown);  // dead
  ASSERT_TRUE(s.t.status().ok()) << s.t.status();

  ASSERT_TRUE(EliminateDeadCode(s.g).ok());
  EXPECT_THAT(OpNames(s.g), ::testing::ElementsAre("gelu", "sgd_update", "relu", "relu",
                                                   "accumulate", "add", "gelu"));
}

// After fusion and scheduling, a training graph keeps every in-place writer and every node whose
// output someone reads later or the caller reads, and nothing else; a second run changes nothing.
TEST(EliminateDeadCodeTest, TrainingGraphKeepsWhatTheStepNeedsAndIsIdempotent) {
  for (Options o : {Options{}, Options{.clip = 1.0, .micro_batches = 2}}) {
    Case c = MlpCase();
    Mlp* m = static_cast<Mlp*>(c.model.get());
    // A diagnostic the loss does not use: dead.
    c.loss = [m](absl::Span<const Var> in) {
      Var logits = (*m)(in[0]);
      ops::Relu(ops::Gelu(logits));
      return ops::CrossEntropy(logits, in[1]);
    };
    Traced t = Trace(c, o);
    ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
    ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
    auto in_place = [](const Graph& g) {
      std::vector<NodeKey> keys;
      for (const Node& n : g.nodes()) {
        if (!n.op->MutatedInputs().empty())
          keys.emplace_back(n.op.get(), n.inputs, n.outputs, n.phase);
      }
      return keys;
    };
    const std::vector<NodeKey> writers = in_place(t.graph);
    const size_t before = t.graph.nodes().size();
    ASSERT_TRUE(EliminateDeadCode(t.graph).ok());
    EXPECT_EQ(in_place(t.graph), writers);
    EXPECT_EQ(t.graph.nodes().size(), before - 2);  // the gelu and relu of the diagnostic
    const std::vector<Node>& nodes = t.graph.nodes();
    for (size_t i = 0; i < nodes.size(); ++i) {
      bool used = !nodes[i].op->MutatedInputs().empty();
      for (ValueId v : nodes[i].outputs) {
        if (v == kNoValue) continue;
        used = used || t.graph.value(v).role == ValueRole::kOutput;
        for (size_t j = i + 1; j < nodes.size(); ++j) used = used || Touches(nodes[j], v);
      }
      EXPECT_TRUE(used) << "node " << i << " (" << nodes[i].op->name() << ") is dead";
    }
    const std::vector<NodeKey> once = Keys(t.graph);
    ASSERT_TRUE(EliminateDeadCode(t.graph).ok());
    EXPECT_EQ(Keys(t.graph), once);
  }
}

// PlanMemory

int64_t Aligned(int64_t n) { return (n + kPlanAlignment - 1) / kPlanAlignment * kPlanAlignment; }
int64_t Bytes(const Graph& g, ValueId v) { return static_cast<int64_t>(g.value(v).type.nbytes()); }

// Everything PlanMemory promises about a plan, checked from the graph alone.
void ExpectSoundPlan(const Graph& g, const MemoryPlan& plan) {
  const int n = g.num_values();
  ASSERT_EQ(static_cast<int>(plan.offset.size()), n);
  ASSERT_EQ(static_cast<int>(plan.live.size()), n);
  // Liveness, recomputed: from the first node that touches a value to the last.
  std::vector<std::pair<int, int>> live(n, {-1, -1});
  for (int i = 0; i < static_cast<int>(g.nodes().size()); ++i) {
    const Node& node = g.nodes()[i];
    std::vector<ValueId> touched = node.outputs;
    touched.insert(touched.end(), node.inputs.begin(), node.inputs.end());
    touched.push_back(node.workspace);
    for (ValueId v : touched) {
      if (v == kNoValue) continue;
      if (live[v].first < 0) live[v].first = i;
      live[v].second = i;
    }
  }
  std::vector<ValueId> arena, persistent;
  std::vector<int64_t> live_bytes(g.nodes().size() + 1, 0);
  for (ValueId v = 0; v < n; ++v) {
    const Value& value = g.value(v);
    const bool used = live[v].first >= 0;
    if (plan.offset[v] >= 0) {
      EXPECT_EQ(plan.offset[v] % kPlanAlignment, 0) << g.ValueToString(v);
    }
    if (!IsPersistent(value.role)) {
      if (!used) {
        EXPECT_EQ(plan.offset[v], -1) << "unused " << g.ValueToString(v);
        continue;
      }
      EXPECT_EQ(plan.live[v], live[v]) << g.ValueToString(v);
      EXPECT_GE(plan.offset[v], 0) << g.ValueToString(v);
      EXPECT_LE(plan.offset[v] + Bytes(g, v), plan.arena_bytes) << g.ValueToString(v);
      // An in-place output shares the node that writes it with the input it overwrites.
      const int from = live[v].first + (plan.alias[v] != kNoValue ? 1 : 0);
      for (int i = from; i <= live[v].second; ++i) live_bytes[i] += Aligned(Bytes(g, v));
      arena.push_back(v);
    } else if (!used && value.role == ValueRole::kOptimizerState) {
      EXPECT_EQ(plan.offset[v], -1) << "unused " << g.ValueToString(v);
    } else {
      // Inputs, parameters, outputs and constants keep their bytes, read or not.
      EXPECT_GE(plan.offset[v], 0) << g.ValueToString(v);
      EXPECT_LE(plan.offset[v] + Bytes(g, v), plan.persistent_bytes) << g.ValueToString(v);
      persistent.push_back(v);
    }
  }
  // Two values live at the same node never share bytes, but for an output that takes over an
  // input's bytes (Note [in-place outputs]): at the node that reads the input last and writes the
  // output, whose op allows that pair, the same size and offset.
  auto handover = [&](ValueId in, ValueId out) {
    if (plan.alias[out] != in || live[in].second != live[out].first) return false;
    const Node& node = g.nodes()[live[out].first];
    for (const auto& [o, slot] : node.op->InPlaceOutputs()) {
      if (node.outputs[o] == out && node.inputs[slot] == in) {
        return Bytes(g, in) == Bytes(g, out) && plan.offset[in] == plan.offset[out];
      }
    }
    return false;
  };
  for (ValueId v = 0; v < n; ++v) {
    if (plan.alias[v] != kNoValue) EXPECT_TRUE(handover(plan.alias[v], v)) << g.ValueToString(v);
  }
  for (size_t i = 0; i < arena.size(); ++i) {
    for (size_t j = i + 1; j < arena.size(); ++j) {
      const ValueId a = arena[i], b = arena[j];
      const bool same_time = live[a].first <= live[b].second && live[b].first <= live[a].second;
      const bool same_bytes = plan.offset[a] < plan.offset[b] + Bytes(g, b) &&
                              plan.offset[b] < plan.offset[a] + Bytes(g, a);
      EXPECT_FALSE(same_time && same_bytes && !handover(a, b) && !handover(b, a))
          << g.ValueToString(a) << " and " << g.ValueToString(b);
    }
  }
  std::sort(persistent.begin(), persistent.end(),
            [&](ValueId a, ValueId b) { return plan.offset[a] < plan.offset[b]; });
  for (size_t i = 0; i + 1 < persistent.size(); ++i) {
    EXPECT_LE(plan.offset[persistent[i]] + Bytes(g, persistent[i]), plan.offset[persistent[i + 1]])
        << g.ValueToString(persistent[i]) << " and " << g.ValueToString(persistent[i + 1]);
  }
  EXPECT_EQ(plan.live_peak_bytes, *std::max_element(live_bytes.begin(), live_bytes.end()));
  EXPECT_GE(plan.arena_bytes, plan.live_peak_bytes);
}

TEST(PlanMemoryTest, TrainingGraphsGetSoundPlans) {
  for (Options o : {Options{}, Options{.clip = 1.0, .micro_batches = 2}}) {
    for (auto make : {MlpCase, ConvCase, GptCase}) {
      Case c = make();
      SCOPED_TRACE(absl::StrCat(c.name, " clip ", o.clip));
      Traced t = Trace(c, o);
      ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
      ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
      ASSERT_TRUE(EliminateDeadCode(t.graph).ok());
      absl::StatusOr<MemoryPlan> plan = PlanMemory(t.graph, {.num_threads = 2});
      ASSERT_TRUE(plan.ok()) << plan.status();
      ExpectSoundPlan(t.graph, *plan);
      EXPECT_GT(plan->arena_bytes, 0);
      EXPECT_GT(plan->persistent_bytes, 0);
    }
  }
}

// Note [in-place outputs]: in a GPT's backward the MLP's (B, T, 4C) values hand their bytes
// over: in each block the linear gradient's dx overwrites the GELU output it read last, and the
// GELU gradient overwrites that dy; every handover is checked against its op by ExpectSoundPlan.
TEST(PlanMemoryTest, GptBackwardWritesItsLargestGradientsInPlace) {
  Case c = GptCase();
  Traced t = Trace(c, Options{});
  ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
  ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
  ASSERT_TRUE(EliminateDeadCode(t.graph).ok());
  absl::StatusOr<MemoryPlan> plan = PlanMemory(t.graph, {.num_threads = 1});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectSoundPlan(t.graph, *plan);
  std::map<OpKind, int> by_kind;
  const int64_t wide = 2 * 8 * 4 * kTinyGpt.width;  // (B, T, 4C)
  for (ValueId v = 0; v < t.graph.num_values(); ++v) {
    if (plan->alias[v] == kNoValue || t.graph.value(v).type.shape.numel() != wide) continue;
    ++by_kind[t.graph.nodes()[plan->live[v].first].op->kind()];
  }
  EXPECT_EQ(by_kind[OpKind::kLinearGrad], kTinyGpt.layers);
  EXPECT_EQ(by_kind[OpKind::kGeluGrad], kTinyGpt.layers);
}

// linear -> relu -> linear -> gelu: each value lives over two nodes, and each activation writes
// its output over the input it reads last (Note [in-place outputs]), so the largest live set is
// the relu's output with the second linear's, 4 x 32 + 4 x 8 floats, and that is all the arena
// needs.
TEST(PlanMemoryTest, ChainNeedsExactlyItsLargestLiveSet) {
  SmallGraph s;
  Var x = s.Input(Shape{4, 16}, "x");
  Var w1 = s.Input(Shape{32, 16}, "w1", ValueRole::kParameter);
  Var w2 = s.Input(Shape{8, 32}, "w2", ValueRole::kParameter);
  Var probe = s.Input(Shape{4, 8}, "probe");
  Var loss = ops::WeightedSum(ops::Gelu(ops::Linear(ops::Relu(ops::Linear(x, w1)), w2)), probe);
  s.t.MarkOutput(loss, "loss");
  ASSERT_TRUE(s.t.status().ok()) << s.t.status();
  absl::StatusOr<MemoryPlan> plan = PlanMemory(s.g, {.num_threads = 4});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectSoundPlan(s.g, *plan);
  EXPECT_EQ(plan->live_peak_bytes, Aligned(4 * 32 * 4) + Aligned(4 * 8 * 4));
  EXPECT_EQ(plan->arena_bytes, plan->live_peak_bytes);
  int in_place = 0;
  for (ValueId v = 0; v < s.g.num_values(); ++v) in_place += plan->alias[v] != kNoValue;
  EXPECT_EQ(in_place, 2);  // the relu's output and the gelu's
  // Five persistent values, each rounded up to the alignment.
  EXPECT_EQ(plan->persistent_bytes, Aligned(4 * 16 * 4) + Aligned(32 * 16 * 4) +
                                        Aligned(8 * 32 * 4) + Aligned(4 * 8 * 4) + Aligned(4));
}

// A frozen convolution block's forward (PockEngine-style fine-tuning runs the layers below the
// trained ones this way): the frozen batch norm writes over its input, and the ReLU6 over the
// batch norm's output, so the three (N, C, H, W) values take the bytes of one.
TEST(PlanMemoryTest, FrozenBatchNormAndActivationWriteOverTheirInputs) {
  SmallGraph s;
  const Shape c{4};
  Var x = s.Input(Shape{2, 4, 5, 5}, "x");
  Var gamma = s.Input(c, "gamma", ValueRole::kParameter);
  Var beta = s.Input(c, "beta", ValueRole::kParameter);
  Var mean = s.Input(c, "mean", ValueRole::kParameter);
  Var var = s.Input(c, "var", ValueRole::kParameter);
  Var probe = s.Input(Shape{2, 4, 5, 5}, "probe");
  Var h = ops::Gelu(x);
  Var y = ops::Relu6(ops::BatchNorm2dFrozen(h, gamma, beta, mean, var));
  s.t.MarkOutput(ops::WeightedSum(y, probe), "loss");
  ASSERT_TRUE(s.t.status().ok()) << s.t.status();
  absl::StatusOr<MemoryPlan> plan = PlanMemory(s.g, {.num_threads = 2});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectSoundPlan(s.g, *plan);
  EXPECT_EQ(plan->live_peak_bytes, Aligned(2 * 4 * 5 * 5 * 4));
  EXPECT_NE(plan->alias[y.id()], kNoValue);  // the ReLU6 over the batch norm's output
  int in_place = 0;
  for (ValueId v = 0; v < s.g.num_values(); ++v) in_place += plan->alias[v] != kNoValue;
  EXPECT_EQ(in_place, 2);
}

// Attention and convolution need scratch: each such node gets a kWorkspace value at least as large
// as the op asks for at that thread count, live only while the node runs, and more threads never
// give less. A plan made again drops the old workspaces (no bytes for them).
TEST(PlanMemoryTest, WorkspacesAreSizedForTheThreadCount) {
  for (auto make : {GptCase, ConvCase}) {
    Case c = make();
    SCOPED_TRACE(c.name);
    Traced t = Trace(c, {});
    ASSERT_TRUE(FuseCrossEntropy(t.graph).ok());
    ASSERT_TRUE(ScheduleUpdates(t.graph).ok());
    ASSERT_TRUE(EliminateDeadCode(t.graph).ok());
    Graph& g = t.graph;
    std::vector<int64_t> previous(g.nodes().size(), 0);
    bool grew = false;
    for (int threads : {1, 2, 4, 8}) {
      SCOPED_TRACE(absl::StrCat(threads, " threads"));
      absl::StatusOr<MemoryPlan> plan = PlanMemory(g, {.num_threads = threads});
      ASSERT_TRUE(plan.ok()) << plan.status();
      ExpectSoundPlan(g, *plan);
      int with_workspace = 0;
      for (size_t i = 0; i < g.nodes().size(); ++i) {
        const Node& n = g.nodes()[i];
        std::vector<TensorType> in;
        for (ValueId v : n.inputs) in.push_back(g.value(v).type);
        const int64_t want =
            static_cast<int64_t>(n.op->WorkspaceBytes(in, {.num_threads = threads}));
        if (want == 0) {
          EXPECT_EQ(n.workspace, kNoValue) << n.op->name();
          continue;
        }
        ++with_workspace;
        ASSERT_NE(n.workspace, kNoValue) << n.op->name();
        EXPECT_EQ(g.value(n.workspace).role, ValueRole::kWorkspace);
        EXPECT_GE(Bytes(g, n.workspace), want) << n.op->name();
        EXPECT_LT(Bytes(g, n.workspace), want + 4) << n.op->name();  // rounded up to a float
        EXPECT_EQ(plan->live[n.workspace],
                  std::make_pair(static_cast<int>(i), static_cast<int>(i)));
        EXPECT_GE(Bytes(g, n.workspace), previous[i]) << n.op->name();
        grew = grew || (previous[i] > 0 && Bytes(g, n.workspace) > previous[i]);
        previous[i] = Bytes(g, n.workspace);
      }
      EXPECT_GT(with_workspace, 0);
    }
    if (c.name == "gpt") {
      EXPECT_TRUE(grew) << "attention scratch is per thread";
    }
  }
}

TEST(PlanMemoryTest, UnusedValuesGetNoBytes) {
  SmallGraph s;
  Var x = s.Input(Shape{4, 8}, "x"), w = s.Input(Shape{6, 8}, "w", ValueRole::kParameter);
  Var unread_input = s.Input(Shape{3}, "unread");
  Var frozen = s.Input(Shape{5}, "frozen", ValueRole::kParameter);
  Var state = s.Input(Shape{6, 8}, "w.exp_avg", ValueRole::kOptimizerState);
  Var probe = s.Input(Shape{4, 6}, "probe");
  Var h = ops::Linear(x, w);
  Var dead = ops::Gelu(h);
  Var loss = ops::WeightedSum(h, probe);
  s.t.MarkOutput(loss, "loss");
  ASSERT_TRUE(EliminateDeadCode(s.g).ok());
  absl::StatusOr<MemoryPlan> plan = PlanMemory(s.g, {.num_threads = 1});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectSoundPlan(s.g, *plan);
  EXPECT_EQ(plan->offset[dead.id()], -1);
  EXPECT_EQ(plan->offset[state.id()], -1);
  EXPECT_GE(plan->offset[h.id()], 0);
  // The caller feeds, loads and reads these whether or not a node does.
  EXPECT_GE(plan->offset[unread_input.id()], 0);
  EXPECT_GE(plan->offset[frozen.id()], 0);
  EXPECT_GE(plan->offset[loss.id()], 0);
}

// Every pass matches ops by kind (graph/op_kind.h), never by name: with every op renamed, each pass
// does to the graph exactly what it does to the original.

// An op that is `op` in everything but its name.
class Renamed final : public Op {
 public:
  explicit Renamed(std::shared_ptr<const Op> op) : op_(std::move(op)) {}
  OpKind kind() const override { return op_->kind(); }
  std::string name() const override { return absl::StrCat("renamed_", op_->name()); }
  std::string Attributes() const override { return op_->Attributes(); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    return op_->Infer(in);
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    return op_->WorkspaceBytes(in, target);
  }
  absl::Status Run(const RunArgs& args) const override { return op_->Run(args); }
  absl::Status Gradient(GradientArgs& args) const override { return op_->Gradient(args); }
  std::vector<int> MutatedInputs() const override { return op_->MutatedInputs(); }

 private:
  std::shared_ptr<const Op> op_;
};

// Each node as a pass sees it, without the identity of its op: "kind(inputs) -> outputs @phase".
using KindKey = std::string;
std::vector<KindKey> KindKeys(const Graph& g) {
  std::vector<KindKey> keys;
  for (const Node& n : g.nodes()) {
    keys.push_back(absl::StrCat(OpKindName(n.op->kind()), "(", absl::StrJoin(n.inputs, ","),
                                ") -> ", absl::StrJoin(n.outputs, ","), " @",
                                static_cast<int>(n.phase)));
  }
  return keys;
}

TEST(PassesMatchKindsTest, RenamingEveryOpChangesNoPass) {
  using PassFn = absl::Status (*)(Graph&);
  struct Pass {
    const char* name;
    PassFn run;
    bool changes_this_graph;  // so that "the same" cannot mean "nothing happened to either"
  };
  const Pass passes[] = {{"FuseCrossEntropy", FuseCrossEntropy, true},
                         {"FuseResidualAdd", FuseResidualAdd, true},
                         {"ScheduleUpdates", ScheduleUpdates, true},
                         {"EliminateDeadCode", EliminateDeadCode, false}};
  Case c = GptCase();
  Traced original = Trace(c, {});
  Traced renamed = Trace(c, {});
  for (Node& n : renamed.graph.mutable_nodes()) n.op = std::make_shared<Renamed>(n.op);
  ASSERT_EQ(renamed.graph.nodes()[0].op->name(),
            absl::StrCat("renamed_", original.graph.nodes()[0].op->name()));
  ASSERT_EQ(KindKeys(renamed.graph), KindKeys(original.graph));
  for (const Pass& pass : passes) {
    SCOPED_TRACE(pass.name);
    const std::vector<KindKey> before = KindKeys(original.graph);
    ASSERT_TRUE(pass.run(original.graph).ok());
    ASSERT_TRUE(pass.run(renamed.graph).ok());
    if (pass.changes_this_graph) {
      EXPECT_NE(KindKeys(original.graph), before);
    }
    EXPECT_EQ(KindKeys(renamed.graph), KindKeys(original.graph));
  }
  EXPECT_EQ(Count(renamed.graph, OpKind::kCrossEntropy), 0);
  EXPECT_EQ(Count(renamed.graph, OpKind::kLinearResidual), 2 * kTinyGpt.layers);
}

}  // namespace
}  // namespace strata::graph
