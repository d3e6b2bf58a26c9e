// The compiled Program: no heap allocation per step, measured peak equal to the plan, a plan that
// never overlaps two live values, gradient accumulation, and errors that name what is wrong.
#include <cmath>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/util/allocation_counter.h"

namespace strata::graph {
namespace {

using ::testing::HasSubstr;

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};

Tensor Tokens(int64_t b, int64_t t, int64_t vocab, uint32_t seed) {
  Tensor x = Tensor::Empty(Shape{b, t}, DType::kI32, DefaultCpuAllocator()).value();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>(rng() % vocab);
  return x;
}

struct Compiled {
  std::unique_ptr<Gpt> gpt;
  std::unique_ptr<Program> program;
};

Compiled CompileGpt(int64_t batch, int64_t seq, TrainOptions o) {
  Compiled r{std::make_unique<Gpt>(kTiny), nullptr};
  Gpt* gpt = r.gpt.get();
  auto p = Compile(*gpt, {{"ids", Shape{batch, seq}, DType::kI32}, {"targets", Shape{batch, seq}, DType::kI32}},
                   [gpt](absl::Span<const Var> in) { return ops::CrossEntropy(gpt->Forward(in[0]), in[1]); },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (p.ok()) r.program = std::move(*p);
  return r;
}

TrainOptions AdamW(double clip) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kCosine, .max_lr = 1e-2, .min_lr = 1e-3,
                .warmup_steps = 2, .total_steps = 20};
  o.clip_grad_norm = clip;
  o.seed = 3;
  return o;
}

TEST(ProgramTest, LossFallsOnARepeatedBatch) {
  Compiled r = CompileGpt(2, 16, AdamW(1.0));
  ASSERT_NE(r.program, nullptr);
  const Tensor ids = Tokens(2, 16, kTiny.vocab, 1), targets = Tokens(2, 16, kTiny.vocab, 2);
  double first = 0, last = 0;
  for (int s = 0; s < 15; ++s) {
    auto stats = r.program->Step({ids, targets});
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (s == 0) first = stats->loss;
    last = stats->loss;
    EXPECT_GT(stats->grad_norm, 0);
  }
  // A freshly initialized model predicts close to uniformly: loss near log(vocab).
  EXPECT_NEAR(first, std::log(static_cast<double>(kTiny.vocab)), 0.3);
  EXPECT_LT(last, first - 1.0);  // memorizing one batch
}

TEST(ProgramTest, NoHeapAllocationAfterTheFirstStep) {
  if (!testing::AllocationCounter::Supported()) GTEST_SKIP() << "allocation counting is off under sanitizers";
  for (double clip : {0.0, 1.0}) {
    Compiled r = CompileGpt(2, 16, AdamW(clip));
    ASSERT_NE(r.program, nullptr);
    const std::vector<Tensor> batch = {Tokens(2, 16, kTiny.vocab, 1), Tokens(2, 16, kTiny.vocab, 2)};
    ASSERT_TRUE(r.program->Step(batch).ok());
    testing::AllocationCounter counter;
    for (int s = 0; s < 3; ++s) ASSERT_TRUE(r.program->Step(batch).ok());
    EXPECT_EQ(counter.count(), 0) << "clip " << clip;
  }
}

TEST(ProgramTest, MeasuredPeakEqualsPlannedPeak) {
  Compiled r = CompileGpt(2, 16, AdamW(1.0));
  ASSERT_NE(r.program, nullptr);
  const MemoryReport planned = r.program->memory_report();
  auto stats = r.program->Step({Tokens(2, 16, kTiny.vocab, 1), Tokens(2, 16, kTiny.vocab, 2)});
  ASSERT_TRUE(stats.ok());
  for (int t = 0; t < kNumMemoryTiers; ++t) EXPECT_EQ(stats->peak_bytes[t], planned.planned_peak[t]);
  EXPECT_GT(planned.planned_peak[0], 0);
  EXPECT_GE(planned.arena_bytes, planned.live_peak_bytes);
}

TEST(ProgramTest, PlanNeverOverlapsTwoLiveValues) {
  for (double clip : {0.0, 1.0}) {
    Compiled r = CompileGpt(3, 11, AdamW(clip));
    ASSERT_NE(r.program, nullptr);
    const Graph& g = r.program->graph();
    const MemoryPlan& plan = r.program->plan();
    std::vector<ValueId> arena;
    for (ValueId v = 0; v < g.num_values(); ++v) {
      if (!IsPersistent(g.value(v).role) && plan.offset[v] >= 0) arena.push_back(v);
    }
    ASSERT_GT(arena.size(), 10u);
    for (size_t i = 0; i < arena.size(); ++i) {
      for (size_t j = i + 1; j < arena.size(); ++j) {
        const ValueId a = arena[i], b = arena[j];
        const bool same_time = plan.live[a].first <= plan.live[b].second &&
                               plan.live[b].first <= plan.live[a].second;
        const bool same_bytes =
            plan.offset[a] < plan.offset[b] + static_cast<int64_t>(g.value(b).type.nbytes()) &&
            plan.offset[b] < plan.offset[a] + static_cast<int64_t>(g.value(a).type.nbytes());
        EXPECT_FALSE(same_time && same_bytes) << "%" << a << " and %" << b;
      }
      EXPECT_LE(plan.offset[arena[i]] + static_cast<int64_t>(g.value(arena[i]).type.nbytes()),
                plan.arena_bytes);
    }
  }
}

TEST(ProgramTest, UpdatesRightAfterTheirGradientShrinkTheArena) {
  // Without clipping every update runs as soon as its gradient is final, so gradients do not all
  // live at once; with clipping they must.
  Compiled eager = CompileGpt(2, 16, AdamW(0.0)), clipped = CompileGpt(2, 16, AdamW(1.0));
  ASSERT_NE(eager.program, nullptr);
  ASSERT_NE(clipped.program, nullptr);
  EXPECT_LT(eager.program->memory_report().arena_bytes, clipped.program->memory_report().arena_bytes);
}

TEST(ProgramTest, MicroBatchesAccumulateToTheSameUpdateAsOneBatch) {
  TrainOptions o = AdamW(1.0);
  o.optimizer = OptimizerOptions::Sgd(0.9, 0.01);
  o.schedule = {.max_lr = 0.5};
  Compiled whole = CompileGpt(4, 8, o);
  o.micro_batches = 2;
  Compiled split = CompileGpt(2, 8, o);
  ASSERT_NE(whole.program, nullptr);
  ASSERT_NE(split.program, nullptr);
  const std::vector<Tensor> batch = {Tokens(4, 8, kTiny.vocab, 5), Tokens(4, 8, kTiny.vocab, 6)};
  for (int s = 0; s < 2; ++s) {
    auto a = whole.program->Step(batch);
    auto b = split.program->Step(batch);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    EXPECT_NEAR(a->loss, b->loss, 1e-5 * a->loss);
    EXPECT_NEAR(a->grad_norm, b->grad_norm, 1e-4 * a->grad_norm);
  }
  for (size_t i = 0; i < whole.program->parameters().size(); ++i) {
    const auto& [name, p] = whole.program->parameters()[i];
    const Tensor q = split.program->parameters()[i].second;
    for (int64_t j = 0; j < p.numel(); ++j) {
      ASSERT_NEAR(p.data<float>()[j], q.data<float>()[j], 1e-5 + 1e-4 * std::abs(p.data<float>()[j]))
          << name << "[" << j << "]";
    }
  }
}

TEST(ProgramTest, BadBatchesAreRefusedWithTheInputNamed) {
  Compiled r = CompileGpt(2, 16, AdamW(1.0));
  ASSERT_NE(r.program, nullptr);
  testing::ExpectStatus(r.program->Step({Tokens(2, 8, kTiny.vocab, 1), Tokens(2, 16, kTiny.vocab, 2)}).status(),
                        absl::StatusCode::kInvalidArgument, {"input 'ids' is i32[2, 8]"});
  testing::ExpectStatus(r.program->Step({Tokens(2, 16, kTiny.vocab, 1)}).status(),
                        absl::StatusCode::kInvalidArgument, {"got 1 input tensors"});
  Tensor ids = Tokens(2, 16, kTiny.vocab, 1);
  ids.data<int32_t>()[5] = kTiny.vocab;  // one past the vocabulary
  const absl::Status s = r.program->Step({ids, Tokens(2, 16, kTiny.vocab, 2)}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_THAT(s.message(), HasSubstr("wte"));
  EXPECT_THAT(s.message(), HasSubstr(std::to_string(kTiny.vocab)));
}

TEST(ProgramTest, ShapeErrorsAtCompileTimeNameTheModule) {
  Gpt gpt(kTiny);
  auto p = Compile(gpt, {{"ids", Shape{2, 32}, DType::kI32}, {"targets", Shape{2, 32}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                   AdamW(0));
  testing::ExpectStatus(p.status(), absl::StatusCode::kInvalidArgument, {"block_size = 16"});
  Gpt gpt2(kTiny);
  auto q = Compile(gpt2, {{"ids", Shape{2, 8}, DType::kI32}, {"targets", Shape{2, 7}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt2.Forward(in[0]), in[1]); },
                   AdamW(0));
  testing::ExpectStatus(q.status(), absl::StatusCode::kInvalidArgument, {"targets i32[2, 7]"});
}

TEST(ProgramTest, DumpShowsTheIrAfterEachPass) {
  TrainOptions o = AdamW(1.0);
  o.dump_graph = true;
  Compiled r = CompileGpt(2, 16, o);
  ASSERT_NE(r.program, nullptr);
  const std::string& d = r.program->dump();
  for (const char* s : {"== after trace ==", "== after autodiff ==", "== after fuse_cross_entropy ==",
                        "== after dead_code ==", "== memory plan ==", "causal_attention[heads=4]",
                        "adamw_update", "clip_grad_norm", "h.1.attn.c_attn.weight",
                        "cross_entropy_with_grad"}) {
    EXPECT_THAT(d, HasSubstr(s));
  }
}

}  // namespace
}  // namespace strata::graph
