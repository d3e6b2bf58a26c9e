// Mixed precision (Note [mixed precision] in graph/passes/mixed_precision.cc) through the whole
// compiled step on CPU: bf16 tracks f32 and yet differs from it; what the step stores in the
// working precision is exactly representable in it while the master weights are not; fp16 with a
// loss scale so large that the gradients overflow skips steps (nothing changes, the step count
// stays), halves the scale until the gradients fit, then trains; the scale survives a checkpoint.
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "graph/checkpoint.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "runtime/dtype.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/util/allocation_counter.h"

namespace strata::graph {
namespace {

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};
constexpr int64_t kBatch = 4, kSeq = 16;

Tensor Tokens(uint32_t seed) {
  Tensor x = Tensor::Empty(Shape{kBatch, kSeq}, DType::kI32, DefaultCpuAllocator()).value();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) {
    x.data<int32_t>()[i] = static_cast<int32_t>(rng() % kTiny.vocab);
  }
  return x;
}

struct Trained {
  std::unique_ptr<Gpt> gpt;
  std::unique_ptr<Program> program;
  ValueId logits = kNoValue;
};

Trained CompileGpt(const TrainOptions& o) {
  Trained r{std::make_unique<Gpt>(kTiny), nullptr};
  Gpt* gpt = r.gpt.get();
  ValueId* logits = &r.logits;
  auto p = Compile(*gpt,
                   {{"ids", Shape{kBatch, kSeq}, DType::kI32},
                    {"targets", Shape{kBatch, kSeq}, DType::kI32}},
                   [gpt, logits](absl::Span<const Var> in) {
                     Var y = gpt->Forward(in[0]);
                     in[0].tracer()->MarkOutput(y, "logits");
                     *logits = y.id();
                     return ops::CrossEntropy(y, in[1]);
                   },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (p.ok()) r.program = std::move(*p);
  return r;
}

TrainOptions Options(DType precision) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.max_lr = 3e-3};
  o.clip_grad_norm = 1.0;
  o.seed = 7;
  o.precision = precision;
  return o;
}

bool Representable(float x, DType d) {
  const float back = d == DType::kBF16 ? Bf16ToFloat(FloatToBf16(x)) : F16ToFloat(FloatToF16(x));
  return std::bit_cast<uint32_t>(back) == std::bit_cast<uint32_t>(x);
}

// Elements of `t` not exactly representable in `d`.
int64_t NotRepresentable(const Tensor& t, DType d) {
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += Representable(t.data<float>()[i], d) ? 0 : 1;
  return n;
}

std::vector<float> Snapshot(const Program& p) {
  std::vector<float> all;
  for (const auto* named : {&p.parameters(), &p.optimizer_state()}) {
    for (const auto& [name, t] : *named) {
      all.insert(all.end(), t.data<float>(), t.data<float>() + t.numel());
    }
  }
  return all;
}

TEST(MixedPrecisionTest, Bf16TracksF32AndDiffersFromIt) {
  Trained f32 = CompileGpt(Options(DType::kF32));
  Trained bf16 = CompileGpt(Options(DType::kBF16));
  ASSERT_NE(f32.program, nullptr);
  ASSERT_NE(bf16.program, nullptr);
  const Tensor ids = Tokens(1), targets = Tokens(2);
  int differing = 0;
  double first = 0, last = 0;
  for (int s = 0; s < 30; ++s) {
    auto a = f32.program->Step({ids, targets});
    auto b = bf16.program->Step({ids, targets});
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_NEAR(b->loss, a->loss, 0.03 * a->loss) << "step " << s;
    EXPECT_EQ(b->loss_scale, 1.0);  // bf16 does not scale by default
    EXPECT_FALSE(b->skipped);
    differing += b->loss != a->loss ? 1 : 0;
    if (s == 0) first = b->loss;
    last = b->loss;
  }
  EXPECT_EQ(differing, 30) << "bf16 gave f32's losses: nothing was rounded";
  EXPECT_LT(last, first - 1.0);  // and it learns the batch
  EXPECT_EQ(bf16.program->step_count(), 30);
}

TEST(MixedPrecisionTest, WorkingValuesAreRepresentableAndMasterWeightsStayF32) {
  for (DType d : {DType::kBF16, DType::kF16}) {
    TrainOptions o = Options(d);
    o.keep_gradients = true;
    o.clip_grad_norm = 0;  // clipping scales the kept gradients in place
    Trained r = CompileGpt(o);
    ASSERT_NE(r.program, nullptr);
    for (int s = 0; s < 3; ++s) {
      auto stats = r.program->Step({Tokens(1), Tokens(2)});
      ASSERT_TRUE(stats.ok()) << stats.status();
      ASSERT_FALSE(stats->skipped) << DTypeName(d) << " step " << s;
    }
    const Program& p = *r.program;
    // An activation (the logits) as the last step stored it.
    auto logits = p.value(r.logits);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_EQ(NotRepresentable(*logits, d), 0) << DTypeName(d) << " logits";
    EXPECT_GT(logits->numel(), 0);
    // The parameter gradients as the backward stored them (bf16: no update rescales them in
    // place; f16's updates unscale them, which can take them below f16's range).
    for (const auto& [name, g] : p.gradients()) {
      if (d == DType::kBF16) EXPECT_EQ(NotRepresentable(g, d), 0) << "gradient of " << name;
    }
    // The master weights took f32 updates: most of their elements are off the working grid.
    auto w = p.parameter("h.0.mlp.c_fc.weight");
    ASSERT_TRUE(w.ok());
    EXPECT_GT(NotRepresentable(*w, d), w->numel() / 2) << DTypeName(d);
    // The loss and the optimizer state stay f32.
    EXPECT_EQ(p.graph().value(r.logits).precision, d);
    int working_copies = 0;
    for (const Node& n : p.graph().nodes()) {
      if (n.op->kind() == OpKind::kRoundToPrecision) {
        ++working_copies;
        EXPECT_EQ(p.graph().value(n.inputs[0]).role, ValueRole::kParameter);
        continue;
      }
      for (ValueId v : n.outputs) {
        if (v != kNoValue && p.graph().value(v).name == "loss") {
          EXPECT_EQ(p.graph().value(v).precision, DType::kF32);
        }
      }
      if (n.op->kind() == OpKind::kAdamWUpdate) {
        EXPECT_EQ(p.graph().value(n.inputs[0]).role, ValueRole::kParameter);
        continue;
      }
      // No compute node reads a master weight.
      for (ValueId v : n.inputs) {
        EXPECT_NE(p.graph().value(v).role, ValueRole::kParameter)
            << n.op->name() << " reads " << p.graph().value(v).name;
      }
    }
    EXPECT_EQ(working_copies, static_cast<int>(p.parameters().size()));
  }
}

// Recomputed activations are rounded as the originals were: activation checkpointing changes
// no bit of a bf16 run, as it changes none of an f32 one.
TEST(MixedPrecisionTest, RecomputeGivesTheSameBf16Losses) {
  TrainOptions o = Options(DType::kBF16);
  TrainOptions recompute = o;
  recompute.recompute = true;
  Trained plain = CompileGpt(o), recomputed = CompileGpt(recompute);
  ASSERT_NE(plain.program, nullptr);
  ASSERT_NE(recomputed.program, nullptr);
  for (int s = 0; s < 3; ++s) {
    auto a = plain.program->Step({Tokens(1), Tokens(2)});
    auto b = recomputed.program->Step({Tokens(1), Tokens(2)});
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->loss, b->loss) << "step " << s;
  }
  EXPECT_EQ(Snapshot(*plain.program), Snapshot(*recomputed.program));
}

TEST(MixedPrecisionTest, DumpShowsWorkingCopiesAndStoredPrecision) {
  TrainOptions o = Options(DType::kBF16);
  o.dump_graph = true;
  Trained r = CompileGpt(o);
  ASSERT_NE(r.program, nullptr);
  const std::string& dump = r.program->dump();
  EXPECT_NE(dump.find("== after mixed_precision =="), std::string::npos);
  EXPECT_NE(dump.find("round_to_precision[bf16](%"), std::string::npos);
  EXPECT_NE(dump.find("wte.weight@bf16"), std::string::npos);
  EXPECT_NE(dump.find(" as bf16"), std::string::npos);
}

TEST(MixedPrecisionTest, F16OverflowSkipsStepsAndBacksOffUntilTheGradientsFit) {
  TrainOptions o = Options(DType::kF16);
  o.loss_scale.init_scale = 0x1p30;  // scaled gradients far past 65504
  o.loss_scale.growth_interval = 1000;
  // The true (f32) gradients of the first step, for the scale at which they fit in f16.
  TrainOptions reference = Options(DType::kF32);
  reference.keep_gradients = true;
  reference.clip_grad_norm = 0;
  Trained f32 = CompileGpt(reference);
  ASSERT_NE(f32.program, nullptr);
  ASSERT_TRUE(f32.program->Step({Tokens(1), Tokens(2)}).ok());
  double max_grad = 0;
  for (const auto& [name, g] : f32.program->gradients()) {
    for (int64_t i = 0; i < g.numel(); ++i) max_grad = std::max(max_grad, std::fabs(double{g.data<float>()[i]}));
  }
  ASSERT_GT(max_grad, 0);
  Trained r = CompileGpt(o);
  ASSERT_NE(r.program, nullptr);
  Program& p = *r.program;
  const Tensor ids = Tokens(1), targets = Tokens(2);
  const std::vector<float> initial = Snapshot(p);
  double expected_scale = 0x1p30;
  int skipped = 0;
  double first_loss = 0;
  for (int s = 0; s < 40; ++s) {
    auto stats = p.Step({ids, targets});
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->loss_scale, expected_scale) << "step " << s;
    if (!stats->skipped) break;
    ++skipped;
    // Nothing changed: parameters and optimizer state bit for bit, and no optimizer step.
    EXPECT_EQ(Snapshot(p), initial) << "skipped step " << s << " changed the state";
    EXPECT_EQ(p.step_count(), 0);
    EXPECT_EQ(stats->step, 0);
    EXPECT_FALSE(std::isfinite(stats->grad_norm));
    expected_scale *= 0.5;
    EXPECT_EQ(p.loss_scaler()->scale(), expected_scale);
    if (s == 0) first_loss = stats->loss;
  }
  // The scale it settled on carries the largest parameter gradient below f16's overflow (with
  // some room for f16's rounding of the activations); the scales it skipped did not all.
  EXPECT_GE(skipped, 1);
  EXPECT_LE(expected_scale * max_grad, 65504 * 1.1);
  EXPECT_GT(0x1p30 * max_grad, 65504);
  EXPECT_EQ(p.step_count(), 1);
  EXPECT_NE(Snapshot(p), initial);
  EXPECT_EQ(p.loss_scaler()->good_steps(), 1);
  // Training proceeds; near the edge of f16's range a later step may overflow again, and then
  // it too is skipped and the scale halves.
  double last = 0;
  int later_skips = 0;
  for (int s = 0; s < 25; ++s) {
    const double scale = p.loss_scaler()->scale();
    auto stats = p.Step({ids, targets});
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_TRUE(std::isfinite(stats->loss));
    EXPECT_EQ(stats->loss_scale, scale);
    EXPECT_EQ(p.loss_scaler()->scale(), stats->skipped ? scale / 2 : scale);
    later_skips += stats->skipped ? 1 : 0;
    last = stats->loss;
  }
  EXPECT_LE(later_skips, 3);
  EXPECT_EQ(p.step_count(), 26 - later_skips);
  EXPECT_LT(last, first_loss - 1.0);
}

// AdamW's step hardly depends on the gradient's scale, so a gradient left scaled would go unseen
// there; SGD's step is proportional to it: the f16 step with a loss scale must move the weights
// as far as the f32 step without one.
TEST(MixedPrecisionTest, F16UpdatesUnscaleTheGradient) {
  for (double scale : {1.0, 1024.0}) {
    TrainOptions sgd = Options(DType::kF16);
    sgd.optimizer = OptimizerOptions::Sgd(0.0, 0.0);
    sgd.clip_grad_norm = 0;
    sgd.loss_scale.init_scale = scale;
    Trained f16 = CompileGpt(sgd);
    TrainOptions ref = sgd;
    ref.precision = DType::kF32;
    Trained f32 = CompileGpt(ref);
    ASSERT_NE(f16.program, nullptr);
    ASSERT_NE(f32.program, nullptr);
    ASSERT_TRUE(f16.program->loss_scaler() != nullptr);
    EXPECT_EQ(f32.program->loss_scaler(), nullptr);
    const std::vector<float> before = Snapshot(*f32.program);
    ASSERT_EQ(Snapshot(*f16.program), before);
    ASSERT_TRUE(f16.program->Step({Tokens(1), Tokens(2)}).ok());
    ASSERT_TRUE(f32.program->Step({Tokens(1), Tokens(2)}).ok());
    const std::vector<float> a = Snapshot(*f32.program), b = Snapshot(*f16.program);
    double step_f32 = 0, step_f16 = 0, diff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      step_f32 += std::fabs(a[i] - before[i]);
      step_f16 += std::fabs(b[i] - before[i]);
      diff += std::fabs(a[i] - b[i]);
    }
    EXPECT_GT(step_f32, 0);
    // Same size of step, up to f16 rounding of the activations and gradients.
    EXPECT_NEAR(step_f16 / step_f32, 1.0, 0.05) << "scale " << scale;
    EXPECT_LT(diff, 0.1 * step_f32) << "scale " << scale;
  }
}

// The skip and the unscaling live in the update ops, so every way of running them honors them:
// updates over state offloaded to NVMe (chunked, and deferred into the next step), and updates
// after gradient accumulation over micro-batches. Each gives the losses and scales of the plain
// run, bit for bit (the same program on another placement), skipped steps included.
TEST(MixedPrecisionTest, F16SkipsAlikeWhenOffloadedOrAccumulated) {
  TrainOptions o = Options(DType::kF16);
  o.loss_scale.init_scale = 0x1p22;
  o.loss_scale.growth_interval = 4;
  TrainOptions nvme = o;
  nvme.offload.params = MemoryTier::kNvme;
  nvme.offload.grads = MemoryTier::kHost;
  nvme.offload.optimizer = MemoryTier::kNvme;
  nvme.offload.io.dir = ::testing::TempDir();
  nvme.offload.persistence_threshold = 0;
  Trained plain = CompileGpt(o), offloaded = CompileGpt(nvme);
  ASSERT_NE(plain.program, nullptr);
  ASSERT_NE(offloaded.program, nullptr);
  int skipped = 0;
  for (int s = 0; s < 12; ++s) {
    const Tensor ids = Tokens(1 + s % 3), targets = Tokens(7 + s % 3);
    auto a = plain.program->Step({ids, targets});
    auto b = offloaded.program->Step({ids, targets});
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    EXPECT_EQ(a->loss, b->loss) << "step " << s;
    EXPECT_EQ(a->loss_scale, b->loss_scale) << "step " << s;
    EXPECT_EQ(a->skipped, b->skipped) << "step " << s;
    skipped += a->skipped ? 1 : 0;
  }
  EXPECT_GE(skipped, 1);
  EXPECT_LT(skipped, 12);
  ASSERT_TRUE(offloaded.program->Flush().ok());
  EXPECT_EQ(plain.program->step_count(), offloaded.program->step_count());

  // Two micro-batches of half the rows: gradients accumulate in f32 and the step is skipped or
  // taken as a whole.
  TrainOptions accumulate = o;
  accumulate.micro_batches = 2;
  Trained acc{std::make_unique<Gpt>(kTiny), nullptr};
  Gpt* gpt = acc.gpt.get();
  auto p = Compile(*gpt,
                   {{"ids", Shape{kBatch / 2, kSeq}, DType::kI32},
                    {"targets", Shape{kBatch / 2, kSeq}, DType::kI32}},
                   [gpt](absl::Span<const Var> in) {
                     return ops::CrossEntropy(gpt->Forward(in[0]), in[1]);
                   },
                   accumulate);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::vector<float> initial = Snapshot(**p);
  int acc_skipped = 0, taken = 0;
  for (int s = 0; s < 12; ++s) {
    const double scale = (*p)->loss_scaler()->scale();
    const std::vector<float> before = Snapshot(**p);
    auto st = (*p)->Step({Tokens(1), Tokens(2)});
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_EQ(st->loss_scale, scale);
    if (st->skipped) {
      ++acc_skipped;
      // Parameters and moments unchanged; the accumulators were zeroed for the next step.
      EXPECT_EQ(Snapshot(**p), before) << "step " << s;
    } else {
      ++taken;
    }
  }
  EXPECT_GE(acc_skipped, 1);
  EXPECT_GE(taken, 1);
  EXPECT_EQ((*p)->step_count(), taken);
  EXPECT_NE(Snapshot(**p), initial);
}

TEST(MixedPrecisionTest, F16LossScaleSurvivesSaveAndResume) {
  TrainOptions o = Options(DType::kF16);
  o.loss_scale.init_scale = 0x1p24;
  o.loss_scale.growth_interval = 3;
  Trained a = CompileGpt(o);
  ASSERT_NE(a.program, nullptr);
  const Tensor ids = Tokens(1), targets = Tokens(2);
  for (int s = 0; s < 12; ++s) ASSERT_TRUE(a.program->Step({ids, targets}).ok());
  const float scale = a.program->loss_scaler()->scale();
  const int64_t good = a.program->loss_scaler()->good_steps();
  ASSERT_LT(scale, 0x1p24f);  // it backed off
  const std::string dir = ::testing::TempDir() + "/mixed_precision_ckpt";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(SaveCheckpoint(*a.program, TrainerState{}, dir).ok());

  Trained b = CompileGpt(o);
  ASSERT_NE(b.program, nullptr);
  EXPECT_EQ(b.program->loss_scaler()->scale(), 0x1p24f);
  auto loaded = LoadCheckpoint(*b.program, dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(b.program->loss_scaler()->scale(), scale);
  EXPECT_EQ(b.program->loss_scaler()->good_steps(), good);
  EXPECT_EQ(b.program->step_count(), a.program->step_count());
  // Resumed and original continue bit for bit, scale changes included.
  for (int s = 0; s < 6; ++s) {
    auto x = a.program->Step({ids, targets});
    auto y = b.program->Step({ids, targets});
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x->loss, y->loss) << "step " << s;
    EXPECT_EQ(x->loss_scale, y->loss_scale) << "step " << s;
    EXPECT_EQ(x->skipped, y->skipped) << "step " << s;
  }
  // A checkpoint's scale that does not fit this program's options is refused by field.
  TrainOptions shorter = o;
  shorter.loss_scale.growth_interval = 1;
  Trained c = CompileGpt(shorter);
  ASSERT_NE(c.program, nullptr);
  if (good > 0) {
    testing::ExpectStatus(LoadCheckpoint(*c.program, dir).status(),
                          absl::StatusCode::kInvalidArgument, {"good_steps"});
  }
  std::filesystem::remove_all(dir);
}

// The pass alone, on the traced GPT step: what it marks and what it keeps f32.
TEST(MixedPrecisionTest, PassMarksComputeOutputsAndKeepsStatisticsLossAndUpdatesF32) {
  Gpt gpt(kTiny);
  TrainOptions o = Options(DType::kBF16);
  auto t = TraceTrainingStep(gpt,
                             {{"ids", Shape{kBatch, kSeq}, DType::kI32},
                              {"targets", Shape{kBatch, kSeq}, DType::kI32}},
                             [&](absl::Span<const Var> in) {
                               return ops::CrossEntropy(gpt.Forward(in[0]), in[1]);
                             },
                             o);
  ASSERT_TRUE(t.ok()) << t.status();
  Graph& g = t->graph;
  ASSERT_TRUE(FuseCrossEntropy(g).ok());
  testing::ExpectStatus(ApplyMixedPrecision(g, DType::kI32, t->config.loss),
                        absl::StatusCode::kInvalidArgument, {"precision i32", "bf16 or f16"});
  const Graph f32 = g;
  ASSERT_TRUE(ApplyMixedPrecision(g, DType::kF32, t->config.loss).ok());  // a no-op
  EXPECT_EQ(g.ToString(), f32.ToString());
  ASSERT_TRUE(ApplyMixedPrecision(g, DType::kBF16, t->config.loss).ok());

  EXPECT_EQ(g.value(t->config.loss).precision, DType::kF32);
  std::vector<bool> read(g.num_values(), false);
  int layer_norms = 0, attentions = 0, updates = 0, copies = 0;
  for (const Node& n : g.nodes()) {
    const OpKind k = n.op->kind();
    if (k == OpKind::kRoundToPrecision) {
      ++copies;
      EXPECT_FALSE(read[n.inputs[0]]) << g.value(n.inputs[0]).name << " was read before its copy";
      EXPECT_EQ(g.value(n.outputs[0]).name, g.value(n.inputs[0]).name + "@bf16");
    }
    for (ValueId v : n.inputs) read[v] = true;
    if (k == OpKind::kLayerNorm) {
      ++layer_norms;
      EXPECT_EQ(g.value(n.outputs[0]).precision, DType::kBF16);
      EXPECT_EQ(g.value(n.outputs[1]).precision, DType::kF32);  // mean
      EXPECT_EQ(g.value(n.outputs[2]).precision, DType::kF32);  // 1 / std
    }
    if (k == OpKind::kCausalAttention) {
      ++attentions;
      EXPECT_EQ(g.value(n.outputs[0]).precision, DType::kBF16);
      EXPECT_EQ(g.value(n.outputs[1]).precision, DType::kF32);  // log-sum-exp
    }
    if (k == OpKind::kLinearGrad || k == OpKind::kGeluGrad) {
      for (ValueId v : n.outputs) {
        if (v != kNoValue) EXPECT_EQ(g.value(v).precision, DType::kBF16) << n.op->name();
      }
    }
    if (n.phase == Phase::kUpdate) {  // norms stay f32; updates read the f32 masters
      for (ValueId v : n.outputs) {
        if (v != kNoValue) EXPECT_EQ(g.value(v).precision, DType::kF32) << n.op->name();
      }
      if (k == OpKind::kAdamWUpdate) {
        ++updates;
        EXPECT_EQ(g.value(n.inputs[0]).role, ValueRole::kParameter);
      }
    }
  }
  EXPECT_EQ(layer_norms, 2 * kTiny.layers + 1);
  EXPECT_EQ(attentions, kTiny.layers);
  EXPECT_EQ(copies, updates);  // every parameter of the GPT trains
  EXPECT_GT(copies, 0);
}

// Rounding after each node, the seed rewrite and the scaler's update allocate nothing: a step
// stays allocation-free, skipped or taken.
TEST(MixedPrecisionTest, NoHeapAllocationAfterTheFirstStep) {
  if (!testing::AllocationCounter::Supported()) GTEST_SKIP() << "allocation counting is off under sanitizers";
  for (DType d : {DType::kBF16, DType::kF16}) {
    TrainOptions o = Options(d);
    o.loss_scale.init_scale = 0x1p22;  // some steps skipped, some taken
    Trained r = CompileGpt(o);
    ASSERT_NE(r.program, nullptr);
    const std::vector<Tensor> batch = {Tokens(1), Tokens(2)};
    ASSERT_TRUE(r.program->Step(batch).ok());
    testing::AllocationCounter counter;
    for (int s = 0; s < 6; ++s) ASSERT_TRUE(r.program->Step(batch).ok());
    EXPECT_EQ(counter.count(), 0) << DTypeName(d);
  }
}

TEST(MixedPrecisionTest, BadOptionsNameTheField) {
  Gpt gpt(kTiny);
  auto compile = [&](const TrainOptions& o) {
    return Compile(gpt, {{"ids", Shape{kBatch, kSeq}, DType::kI32},
                         {"targets", Shape{kBatch, kSeq}, DType::kI32}},
                   [&](absl::Span<const Var> in) {
                     return ops::CrossEntropy(gpt.Forward(in[0]), in[1]);
                   },
                   o)
        .status();
  };
  TrainOptions ints = Options(DType::kI32);
  testing::ExpectStatus(compile(ints), absl::StatusCode::kInvalidArgument,
                        {"precision = i32", "f32, bf16 or f16"});
  TrainOptions growth = Options(DType::kF16);
  growth.loss_scale.growth_factor = 0.5;
  testing::ExpectStatus(compile(growth), absl::StatusCode::kInvalidArgument,
                        {"loss scale", "growth_factor = 0.5"});
  // bf16 does not scale unless asked, so its loss-scale options are not read...
  TrainOptions unused = Options(DType::kBF16);
  unused.loss_scale.growth_factor = 0.5;
  EXPECT_TRUE(compile(unused).ok());
  // ...and is checked when it is.
  unused.loss_scaling = TrainOptions::LossScaling::kDynamic;
  testing::ExpectStatus(compile(unused), absl::StatusCode::kInvalidArgument, {"growth_factor"});
}

}  // namespace
}  // namespace strata::graph
