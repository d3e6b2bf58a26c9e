// Dropout in a compiled step (graph/ops/dropout_ops.cc, Note [dropout in the step]): a training
// step drops and Evaluate does not; the gradient is the finite difference of the loss under the
// same mask; one micro-batch of 8 rows and two of 4 draw the same mask; a resumed run draws the
// masks of the run it resumes; two call sites draw two masks; recompute copies the mask; a bad p
// is a compile error naming the module. The ranks' side is in data_parallel_test.cc.
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "graph/checkpoint.h"
#include "graph/compile.h"
#include "graph/nn/layers.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

using ::testing::HasSubstr;

// x (rows, 6) -> fc1 -> tanh -> drop1 -> fc2 -> tanh -> drop2: one checkpointable block.
class Body : public Layer {
 public:
  explicit Body(float p)
      : fc1_(Add<nn::Linear>("fc1", 6, 16)),
        drop1_(Add<nn::Dropout>("drop1", p)),
        fc2_(Add<nn::Linear>("fc2", 16, 16)),
        drop2_(Add<nn::Dropout>("drop2", p)) {}
  Var Forward(Var x) override {
    TraceScope scope(*this, x);
    Var h = (*drop1_)(ops::Tanh((*fc1_)(x)));
    return (*drop2_)(ops::Tanh((*fc2_)(h)));
  }

 private:
  nn::Linear* fc1_;
  nn::Dropout* drop1_;
  nn::Linear* fc2_;
  nn::Dropout* drop2_;
};

// The body, then a linear head to 3 classes. Dropout modules hold no parameters, so a net with
// p = 0 has the same parameter paths, and with the same seed the same weights.
class DropNet : public Module {
 public:
  explicit DropNet(float p) : body_(Add<Body>("body", p)), head_(Add<nn::Linear>("head", 16, 3)) {}
  Var Logits(Var x) { return (*head_)((*body_)(x)); }
  Body* body() { return body_; }

 private:
  Body* body_;
  nn::Linear* head_;
};

TrainOptions Sgd(double lr, int micro_batches = 1) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::Sgd(0.0, 0.0);
  o.schedule = {.max_lr = lr, .min_lr = 0.0};
  o.micro_batches = micro_batches;
  o.keep_gradients = true;
  o.seed = 21;
  return o;
}

std::unique_ptr<Program> CompileNet(DropNet& net, int64_t rows, const TrainOptions& o) {
  auto p = Compile(net, {{"x", Shape{rows, 6}, DType::kF32}, {"y", Shape{rows}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Logits(in[0]), in[1]); },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

std::vector<Tensor> Batch(int64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Tensor x = testing::RandomTensor(Shape{rows, 6}, rng, -2.0f, 2.0f);
  Tensor y = Tensor::Empty(Shape{rows}, DType::kI32, DefaultCpuAllocator()).value();
  for (int64_t i = 0; i < rows; ++i) y.data<int32_t>()[i] = static_cast<int32_t>(rng() % 3);
  return {x, y};
}

int CountKind(const Program& p, OpKind kind) {
  int n = 0;
  for (const Node& node : p.graph().nodes()) n += node.op->kind() == kind;
  return n;
}

double StepLoss(Program& p, const std::vector<Tensor>& batch) {
  absl::StatusOr<StepStats> s = p.Step(batch);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? s->loss : NAN;
}

std::vector<float> Flat(const Tensor& t) { return {t.data<float>(), t.data<float>() + t.numel()}; }

TEST(DropoutGraphTest, TrainingStepDropsAndEvaluateIsTheIdentity) {
  DropNet with(0.5f), without(0.0f);
  auto dropped = CompileNet(with, 8, Sgd(0.0));
  auto plain = CompileNet(without, 8, Sgd(0.0));
  ASSERT_TRUE(dropped && plain);
  EXPECT_EQ(CountKind(*dropped, OpKind::kDropout), 2);
  EXPECT_EQ(CountKind(*dropped, OpKind::kDropoutGrad), 2);
  EXPECT_EQ(CountKind(*plain, OpKind::kDropout), 0) << "p = 0 traces no node";
  const std::vector<Tensor> batch = Batch(8, 1);
  absl::StatusOr<double> eval_dropped = dropped->Evaluate(batch);
  absl::StatusOr<double> eval_plain = plain->Evaluate(batch);
  ASSERT_TRUE(eval_dropped.ok()) << eval_dropped.status();
  ASSERT_TRUE(eval_plain.ok()) << eval_plain.status();
  EXPECT_EQ(*eval_dropped, *eval_plain) << "Evaluate must not drop";
  // lr 0: the weights never move, so losses differ only by their masks.
  const double step1 = StepLoss(*dropped, batch), step2 = StepLoss(*dropped, batch);
  EXPECT_NEAR(StepLoss(*plain, batch), *eval_plain, 1e-6);
  EXPECT_GT(std::abs(step1 - *eval_plain), 1e-3) << "a training step with p = 0.5 did not drop";
  EXPECT_GT(std::abs(step2 - step1), 1e-4) << "step 2 drew step 1's mask";
  EXPECT_EQ(*dropped->Evaluate(batch), *eval_dropped);
}

// The kept gradient against central differences of the training loss, every evaluation at step
// 1 (set_step_count(0)), i.e. under the same mask; lr 0 keeps the weights where they are written.
TEST(DropoutGraphTest, GradientIsTheFiniteDifferenceUnderTheSameMask) {
  DropNet net(0.4f);
  auto p = CompileNet(net, 8, Sgd(0.0));
  ASSERT_TRUE(p);
  const std::vector<Tensor> batch = Batch(8, 2);
  p->set_step_count(0);
  const double base = StepLoss(*p, batch);
  int nonzero = 0, zero = 0;
  for (const auto& [path, grad] : p->gradients()) {
    if (path != "body.fc1.weight" && path != "body.fc2.weight") continue;
    Tensor w = p->parameter(path).value();
    for (int64_t k = 0; k < w.numel(); k += 7) {
      SCOPED_TRACE(path + "[" + std::to_string(k) + "]");
      const float saved = w.data<float>()[k];
      const double eps = 1e-2;
      w.data<float>()[k] = saved + static_cast<float>(eps);
      p->set_step_count(0);
      const double plus = StepLoss(*p, batch);
      w.data<float>()[k] = saved - static_cast<float>(eps);
      p->set_step_count(0);
      const double minus = StepLoss(*p, batch);
      w.data<float>()[k] = saved;
      // The step's kept gradient is of the last run (at saved - eps): run at saved again.
      p->set_step_count(0);
      EXPECT_EQ(StepLoss(*p, batch), base);
      const double g = grad.data<float>()[k];
      EXPECT_NEAR(g, (plus - minus) / (2 * eps), 2e-4 + 1e-2 * std::abs(g));
      (g == 0 ? zero : nonzero)++;
    }
  }
  EXPECT_GT(nonzero, 10);
}

// Rows [4, 8) run as the second micro-batch draw what they draw as rows [4, 8) of one: the
// losses and updated weights of both match.
TEST(DropoutGraphTest, TwoMicroBatchesOfFourDrawTheMaskOfOneOfEight) {
  DropNet one_net(0.3f), two_net(0.3f), plain_net(0.0f);
  auto one = CompileNet(one_net, 8, Sgd(0.1));
  auto two = CompileNet(two_net, 4, Sgd(0.1, /*micro_batches=*/2));
  auto plain = CompileNet(plain_net, 8, Sgd(0.1));
  ASSERT_TRUE(one && two && plain);
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE("step " + std::to_string(s + 1));
    const std::vector<Tensor> batch = Batch(8, 10 + s);
    const double a = StepLoss(*one, batch), b = StepLoss(*two, batch);
    EXPECT_NEAR(b, a, 1e-6 * std::abs(a));
    EXPECT_GT(std::abs(StepLoss(*plain, batch) - a), 1e-3) << "the masks did nothing";
    // SGD without momentum: w -= 0.1 g, so equal weights after the step are equal gradients
    // (the accumulator of two micro-batches is zeroed after its update).
    for (size_t i = 0; i < one->parameters().size(); ++i) {
      const auto& [path, w] = one->parameters()[i];
      testing::ExpectClose(two->parameters()[i].second, testing::ToDouble(w), 1e-5, 1e-7, path);
    }
  }
}

// A run resumed from a checkpoint after step 1 draws steps 2 and 3's masks: its losses are the
// straight run's, bit for bit.
TEST(DropoutGraphTest, ResumedRunDrawsTheSameMasks) {
  TrainOptions o = Sgd(0.1);
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.99, 1e-8, 0.0);
  DropNet straight_net(0.3f), first_net(0.3f), resumed_net(0.3f);
  auto straight = CompileNet(straight_net, 8, o);
  auto first = CompileNet(first_net, 8, o);
  auto resumed = CompileNet(resumed_net, 8, o);
  ASSERT_TRUE(straight && first && resumed);
  std::vector<double> want;
  for (int s = 0; s < 3; ++s) want.push_back(StepLoss(*straight, Batch(8, 30 + s)));
  EXPECT_EQ(StepLoss(*first, Batch(8, 30)), want[0]);
  const std::string dir = (std::filesystem::path(::testing::TempDir()) / "dropout_resume").string();
  ASSERT_TRUE(SaveCheckpoint(*first, TrainerState{}, dir).ok());
  ASSERT_TRUE(LoadCheckpoint(*resumed, dir).ok());
  EXPECT_EQ(resumed->step_count(), 1);
  for (int s = 1; s < 3; ++s) EXPECT_EQ(StepLoss(*resumed, Batch(8, 30 + s)), want[s]) << s;
}

// Two dropouts of one value take two streams: about half of a p = 0.5 mask differs.
TEST(DropoutGraphTest, TwoCallSitesDrawTwoMasks) {
  nn::Linear fc(6, 64);
  Var a, b;
  auto p = Compile(fc, {{"x", Shape{8, 6}, DType::kF32}, {"y", Shape{8}, DType::kI32}},
                   [&](absl::Span<const Var> in) {
                     Var h = fc(in[0]);
                     a = ops::Dropout(h, 0.5f);
                     b = ops::Dropout(h, 0.5f);
                     in[0].tracer()->MarkOutput(a, "a");
                     in[0].tracer()->MarkOutput(b, "b");
                     return ops::CrossEntropy(ops::Add(a, b), in[1]);
                   },
                   Sgd(0.0));
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->Step(Batch(8, 4)).ok());
  const std::vector<float> ma = Flat((*p)->value(a.id()).value());
  const std::vector<float> mb = Flat((*p)->value(b.id()).value());
  int differ = 0;
  for (size_t i = 0; i < ma.size(); ++i) differ += (ma[i] == 0) != (mb[i] == 0);
  const double n = static_cast<double>(ma.size());  // 512: half differ, sd ~11
  EXPECT_NEAR(differ, n / 2, 5 * std::sqrt(n / 4));
}

// Activation checkpointing recomputes the block's dropouts in the backward: the same mask, so
// the same losses and weights, bit for bit.
TEST(DropoutGraphTest, RecomputeDrawsTheForwardsMask) {
  DropNet plain_net(0.3f), recompute_net(0.3f);
  recompute_net.body()->SetRecomputeBoundary(true);
  TrainOptions o = Sgd(0.1);
  auto plain = CompileNet(plain_net, 8, o);
  o.recompute = true;
  auto recomputed = CompileNet(recompute_net, 8, o);
  ASSERT_TRUE(plain && recomputed);
  int copies = 0;
  for (const Node& n : recomputed->graph().nodes()) {
    copies += n.recomputed && n.op->kind() == OpKind::kDropout;
  }
  EXPECT_GT(copies, 0) << "no dropout was recomputed";
  for (int s = 0; s < 3; ++s) {
    const std::vector<Tensor> batch = Batch(8, 40 + s);
    EXPECT_EQ(StepLoss(*recomputed, batch), StepLoss(*plain, batch)) << "step " << s + 1;
  }
  for (size_t i = 0; i < plain->parameters().size(); ++i) {
    EXPECT_EQ(Flat(recomputed->parameters()[i].second), Flat(plain->parameters()[i].second))
        << plain->parameters()[i].first;
  }
}

TEST(DropoutGraphTest, POutsideZeroToOneIsACompileErrorNamingTheModule) {
  for (float bad : {1.0f, -0.1f}) {
    DropNet net(bad);
    auto p = Compile(net, {{"x", Shape{8, 6}, DType::kF32}, {"y", Shape{8}, DType::kI32}},
                     [&](absl::Span<const Var> in) {
                       return ops::CrossEntropy(net.Logits(in[0]), in[1]);
                     },
                     Sgd(0.0));
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(p.status().message(), HasSubstr("body.drop1"));
    EXPECT_THAT(p.status().message(), HasSubstr("dropout: p = "));
    EXPECT_THAT(p.status().message(), HasSubstr("must be in [0, 1)"));
  }
}

}  // namespace
}  // namespace strata::graph
