// The compiled Program: no heap allocation per step, a measured peak that is what the allocators
// handed out, a plan that never overlaps two live values, the plan-checking mode (same losses,
// its high-water the largest live set, a wrong plan caught), gradient accumulation, and errors
// that name what is wrong.
#include <cmath>
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

TEST(ProgramTest, NoHeapAllocationInTheCnnOrWithMicroBatches) {
  if (!testing::AllocationCounter::Supported()) GTEST_SKIP() << "allocation counting is off under sanitizers";
  TrainOptions o;
  o.optimizer = OptimizerOptions::Sgd(/*momentum=*/0.9, /*weight_decay=*/5e-4);
  o.schedule.max_lr = 0.05;
  o.clip_grad_norm = 1.0;
  MobileNet net(MobileNetConfig{});
  auto cnn = Compile(net, {{"images", Shape{2, 1, 28, 28}}, {"labels", Shape{2}, DType::kI32}},
                     [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Forward(in[0]), in[1]); },
                     o);
  ASSERT_TRUE(cnn.ok()) << cnn.status();
  std::mt19937_64 rng(4);
  Tensor labels = Tensor::Zeros(Shape{2}, DType::kI32, DefaultCpuAllocator()).value();
  labels.data<int32_t>()[1] = 7;
  const std::vector<Tensor> images = {testing::RandomTensor(Shape{2, 1, 28, 28}, rng), labels};
  ASSERT_TRUE((*cnn)->Step(images).ok());
  {
    testing::AllocationCounter counter;
    for (int s = 0; s < 2; ++s) ASSERT_TRUE((*cnn)->Step(images).ok());
    EXPECT_EQ(counter.count(), 0) << "CNN";
  }
  // Gradient accumulation: accumulate and zero nodes, and an update phase after the last.
  TrainOptions a = AdamW(1.0);
  a.micro_batches = 3;
  Compiled r = CompileGpt(2, 16, a);
  ASSERT_NE(r.program, nullptr);
  const std::vector<Tensor> batch = {Tokens(6, 16, kTiny.vocab, 1), Tokens(6, 16, kTiny.vocab, 2)};
  ASSERT_TRUE(r.program->Step(batch).ok());
  testing::AllocationCounter counter;
  for (int s = 0; s < 2; ++s) ASSERT_TRUE(r.program->Step(batch).ok());
  EXPECT_EQ(counter.count(), 0) << "3 micro-batches";
}

// Measured is the allocators' own count of the bytes they handed out during the step. The
// planned run hands out two blocks, the persistent region and the arena; the checking run hands
// out one block per live arena value, so its high-water is the plan's largest live set.
TEST(ProgramTest, MeasuredPeakIsWhatTheAllocatorsHandedOut) {
  for (const bool check : {false, true}) {
    SCOPED_TRACE(check ? "check_plan" : "planned arena");
    TrainOptions o = AdamW(1.0);
    o.check_plan = check;
    Compiled r = CompileGpt(2, 16, o);
    ASSERT_NE(r.program, nullptr);
    const MemoryPlan& plan = r.program->plan();
    ASSERT_GT(plan.persistent_bytes, 0);
    ASSERT_GT(plan.live_peak_bytes, 0);
    // The arena can only be larger than the largest live set (equal where the placement leaves
    // no hole, which depends on the thread count's workspaces).
    ASSERT_GE(plan.arena_bytes, plan.live_peak_bytes);
    const int64_t expected = plan.persistent_bytes + (check ? plan.live_peak_bytes : plan.arena_bytes);
    for (int s = 0; s < 2; ++s) {
      auto stats = r.program->Step({Tokens(2, 16, kTiny.vocab, 1), Tokens(2, 16, kTiny.vocab, 2)});
      ASSERT_TRUE(stats.ok()) << stats.status();
      EXPECT_EQ(stats->peak_bytes[static_cast<int>(MemoryTier::kDevice)], expected) << "step " << s;
      EXPECT_EQ(stats->peak_bytes[static_cast<int>(MemoryTier::kHost)], 0);
      EXPECT_EQ(stats->peak_bytes[static_cast<int>(MemoryTier::kNvme)], 0);
    }
    const MemoryReport report = r.program->memory_report();
    EXPECT_EQ(report.planned_peak[static_cast<int>(MemoryTier::kDevice)], expected);
    EXPECT_EQ(report.persistent_bytes, plan.persistent_bytes);
    EXPECT_EQ(report.live_peak_bytes, plan.live_peak_bytes);
  }
}

// Bitwise: the same kernels on the same bytes, only where those bytes live differs.
void ExpectCheckedRunMatches(int64_t batch, int64_t seq, TrainOptions o) {
  Compiled planned = CompileGpt(batch, seq, o);
  o.check_plan = true;
  Compiled checked = CompileGpt(batch, seq, o);
  ASSERT_NE(planned.program, nullptr);
  ASSERT_NE(checked.program, nullptr);
  const int64_t rows = batch * o.micro_batches;
  for (int s = 0; s < 2; ++s) {
    const std::vector<Tensor> in = {Tokens(rows, seq, kTiny.vocab, 10 + s), Tokens(rows, seq, kTiny.vocab, 20 + s)};
    auto a = planned.program->Step(in);
    auto b = checked.program->Step(in);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->loss, b->loss) << "step " << s;
    EXPECT_EQ(a->grad_norm, b->grad_norm) << "step " << s;
    auto ea = planned.program->Evaluate(in);
    auto eb = checked.program->Evaluate(in);
    ASSERT_TRUE(ea.ok() && eb.ok()) << ea.status() << eb.status();
    EXPECT_EQ(*ea, *eb) << "evaluate after step " << s;
  }
}

TEST(ProgramTest, CheckedRunGivesBitwiseTheLossesOfThePlannedArena) {
  ExpectCheckedRunMatches(2, 16, AdamW(0.0));
  ExpectCheckedRunMatches(2, 16, AdamW(1.0));
  TrainOptions o = AdamW(1.0);
  o.micro_batches = 2;
  ExpectCheckedRunMatches(2, 8, o);
}

// The step of the tiny GPT through the passes and the plan, stopped before Program::Create so
// that a test can break the plan.
struct Planned {
  std::unique_ptr<Gpt> gpt;
  Graph graph;
  MemoryPlan plan;
  Program::Config config;
};

Planned PlanGpt(TrainOptions o) {
  Planned p;
  p.gpt = std::make_unique<Gpt>(kTiny);
  Gpt* gpt = p.gpt.get();
  auto traced = TraceTrainingStep(
      *gpt, {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}},
      [gpt](absl::Span<const Var> in) { return ops::CrossEntropy(gpt->Forward(in[0]), in[1]); }, o);
  EXPECT_TRUE(traced.ok()) << traced.status();
  p.graph = std::move(traced->graph);
  p.config = std::move(traced->config);
  EXPECT_TRUE(FuseCrossEntropy(p.graph).ok());
  EXPECT_TRUE(FuseResidualAdd(p.graph).ok());
  EXPECT_TRUE(ScheduleUpdates(p.graph).ok());
  EXPECT_TRUE(EliminateDeadCode(p.graph).ok());
  auto plan = PlanMemory(p.graph, {.num_threads = p.config.num_threads});
  EXPECT_TRUE(plan.ok()) << plan.status();
  p.plan = std::move(*plan);
  return p;
}

// The first activation that some later node reads (its interval spans several nodes).
// An activation live over more than two nodes whose bytes no output takes over at its last
// reader (Note [in-place outputs]): a change to its interval shows as a use outside it.
ValueId LongLivedActivation(const Planned& p) {
  std::vector<bool> handed_over(p.graph.num_values(), false);
  for (ValueId v = 0; v < p.graph.num_values(); ++v) {
    if (p.plan.alias[v] != kNoValue) handed_over[p.plan.alias[v]] = true;
  }
  for (ValueId v = 0; v < p.graph.num_values(); ++v) {
    if (p.graph.value(v).role == ValueRole::kActivation && p.plan.offset[v] >= 0 &&
        p.plan.live[v].second > p.plan.live[v].first + 1 && !handed_over[v]) {
      return v;
    }
  }
  return kNoValue;
}

TEST(ProgramTest, CheckedRunCatchesALivenessThatEndsOneNodeEarly) {
  TrainOptions o = AdamW(1.0);
  o.check_plan = true;
  Planned p = PlanGpt(o);
  const ValueId v = LongLivedActivation(p);
  ASSERT_NE(v, kNoValue);
  const auto [first, last] = p.plan.live[v];
  --p.plan.live[v].second;
  auto program = Program::Create(std::move(p.graph), std::move(p.plan), std::move(p.config));
  ASSERT_TRUE(program.ok()) << program.status();
  const std::vector<Tensor> batch = {Tokens(2, 16, kTiny.vocab, 1), Tokens(2, 16, kTiny.vocab, 2)};
  for (int s = 0; s < 2; ++s) {  // the failed step released what it held: the same error again
    testing::ExpectStatus((*program)->Step(batch).status(), absl::StatusCode::kInternal,
                          {absl::StrCat("node ", last, " ("), absl::StrCat("uses value %", v, " "),
                           absl::StrCat("outside its planned live interval [", first, ", ", last - 1, "]")});
  }
}

TEST(ProgramTest, CheckedRunCatchesTwoLiveValuesPlannedOnTheSameBytes) {
  TrainOptions o = AdamW(1.0);
  o.check_plan = true;
  Planned p = PlanGpt(o);
  const ValueId a = LongLivedActivation(p);
  ASSERT_NE(a, kNoValue);
  // A value that is born while `a` is live, moved onto `a`'s bytes.
  ValueId b = kNoValue;
  for (ValueId v = 0; v < p.graph.num_values() && b == kNoValue; ++v) {
    if (v != a && !IsPersistent(p.graph.value(v).role) && p.plan.offset[v] >= 0 &&
        p.plan.live[v].first > p.plan.live[a].first && p.plan.live[v].first <= p.plan.live[a].second &&
        p.graph.value(v).type.nbytes() > 0) {
      b = v;
    }
  }
  ASSERT_NE(b, kNoValue);
  p.plan.offset[b] = p.plan.offset[a];
  auto program = Program::Create(std::move(p.graph), std::move(p.plan), std::move(p.config));
  ASSERT_TRUE(program.ok()) << program.status();
  testing::ExpectStatus(
      (*program)->Step({Tokens(2, 16, kTiny.vocab, 1), Tokens(2, 16, kTiny.vocab, 2)}).status(),
      absl::StatusCode::kInternal, {absl::StrCat("value %", b, " "), "overlaps", absl::StrCat("value %", a, " ")});
}

// A test-only op that runs another and then misbehaves as a buggy kernel might.
class Wrapped : public Op {
 public:
  explicit Wrapped(std::shared_ptr<const Op> op) : op_(std::move(op)) {}
  OpKind kind() const override { return op_->kind(); }
  std::string name() const override { return op_->name(); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    return op_->Infer(in);
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    return op_->WorkspaceBytes(in, target);
  }
  absl::Status Run(const RunArgs& args) const override { return op_->Run(args); }
  std::vector<int> MutatedInputs() const override { return op_->MutatedInputs(); }

 private:
  std::shared_ptr<const Op> op_;
};

// Reads its output before writing it (adds 0 times the first element it finds there). On the
// planned arena that element is whatever an earlier value or allocation left there, usually
// finite, so the bug goes unseen; the checking run's fresh blocks are NaN, so the loss is NaN.
class ReadsItsOutputFirst : public Wrapped {
 public:
  using Wrapped::Wrapped;
  absl::Status Run(const RunArgs& args) const override {
    const float stale = args.out[0].data<float>()[0];
    STRATA_RETURN_IF_ERROR(Wrapped::Run(args));
    args.out[0].data<float>()[0] += 0.0f * stale;
    return absl::OkStatus();
  }
};

// The tiny GPT's first gelu node replaced by `Bad` wrapping it.
template <typename Bad>
void Break(Graph& graph) {
  for (Node& n : graph.mutable_nodes()) {
    if (n.op->kind() == OpKind::kGelu) {
      n.op = std::make_shared<Bad>(n.op);
      return;
    }
  }
  ADD_FAILURE() << "no gelu node";
}

TEST(ProgramTest, CheckedRunTurnsAReadOfUnwrittenBytesIntoNaN) {
  TrainOptions o = AdamW(1.0);
  o.check_plan = true;
  Planned p = PlanGpt(o);
  Break<ReadsItsOutputFirst>(p.graph);
  auto program = Program::Create(std::move(p.graph), std::move(p.plan), std::move(p.config));
  ASSERT_TRUE(program.ok()) << program.status();
  auto stats = (*program)->Step({Tokens(2, 16, kTiny.vocab, 1), Tokens(2, 16, kTiny.vocab, 2)});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(std::isnan(stats->loss)) << stats->loss;
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
        // An in-place output takes over its input's bytes at the node where the input dies
        // (Note [in-place outputs]); graph_passes_test checks each such pair against its op.
        const bool handover = (plan.alias[b] == a && plan.live[a].second == plan.live[b].first) ||
                              (plan.alias[a] == b && plan.live[b].second == plan.live[a].first);
        EXPECT_FALSE(same_time && same_bytes && !handover) << "%" << a << " and %" << b;
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
                        "adamw_update", "global_grad_norm", "h.1.attn.c_attn.weight",
                        "cross_entropy_with_grad"}) {
    EXPECT_THAT(d, HasSubstr(s));
  }
}

// An op that, like a buggy kernel, also reads the element just past its output. On the planned
// arena that is a neighbour's byte and nothing is seen; in the checking run under
// AddressSanitizer the value's block ends there, and the read is reported where it happens.
class ReadsPastItsOutput : public Wrapped {
 public:
  using Wrapped::Wrapped;
  absl::Status Run(const RunArgs& args) const override {
    STRATA_RETURN_IF_ERROR(Wrapped::Run(args));
    const Tensor& y = args.out[0];
    volatile float past = y.data<float>()[y.numel()];
    (void)past;
    return absl::OkStatus();
  }
};

TEST(ProgramTest, CheckedRunUnderAddressSanitizerReportsAReadPastAValue) {
#if defined(__SANITIZE_ADDRESS__)
  constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  constexpr bool kAsan = true;
#else
  constexpr bool kAsan = false;
#endif
#else
  constexpr bool kAsan = false;
#endif
  if (!kAsan) GTEST_SKIP() << "needs AddressSanitizer (the debug preset)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: OpenMP does not survive fork
  TrainOptions o = AdamW(1.0);
  o.check_plan = true;
  Planned p = PlanGpt(o);
  Break<ReadsPastItsOutput>(p.graph);
  auto program = Program::Create(std::move(p.graph), std::move(p.plan), std::move(p.config));
  ASSERT_TRUE(program.ok()) << program.status();
  const std::vector<Tensor> batch = {Tokens(2, 16, kTiny.vocab, 1), Tokens(2, 16, kTiny.vocab, 2)};
  EXPECT_DEATH((void)(*program)->Step(batch), "AddressSanitizer");
}

}  // namespace
}  // namespace strata::graph
