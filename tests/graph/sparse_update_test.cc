// Sparse updates (graph/sparse_update.h): the spec's parsing and its errors, which parameters a
// spec trains, and the training step it compiles to: a sparse step must train its parameters
// exactly as a full step does when the updates of every other parameter are masked out (reset
// after each step), and hold no gradient or optimizer state for the frozen ones.
#include "graph/sparse_update.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/models/mobilenet.h"
#include "graph/nn/layers.h"
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "gtest/gtest.h"

namespace strata::graph {
namespace {

using ::testing::HasSubstr;

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 3, .width = 32, .heads = 4};

void ExpectParseError(const std::string& json, const std::string& says) {
  absl::StatusOr<SparseUpdateSpec> s = ParseSparseUpdateJson(json, "spec.json");
  ASSERT_FALSE(s.ok()) << json;
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << json;
  EXPECT_THAT(s.status().message(), HasSubstr("spec.json")) << json;
  EXPECT_THAT(s.status().message(), HasSubstr(says)) << json;
}

TEST(SparseUpdateSpecTest, BadSpecsSayWhatIsWrong) {
  ExpectParseError(R"([{"match": "h.*", "update": "full"})", "not valid JSON");
  ExpectParseError(R"({"match": "h.*", "update": "full"})", "expected a JSON array");
  ExpectParseError(R"(["h.*"])", "entry 0: expected an object");
  ExpectParseError(R"([{"match": "h.*", "update": "full", "lr": 2}])", "unknown field \"lr\"");
  ExpectParseError(R"([{"match": "h.*"}])", "missing \"update\"");
  ExpectParseError(R"([{"update": "full"}])", "missing \"match\"");
  ExpectParseError(R"([{"match": "h.*", "update": 1}])", "\"update\" must be a string");
  ExpectParseError(R"([{"match": "", "update": "full"}])", "\"match\" is empty");
  ExpectParseError(R"([{"match": "h.*", "update": "half"}])", "unknown update rule \"half\"");
  ExpectParseError(R"([{"match": "h.*", "update": "full"}, {"match": "x", "update": "channels:0"}])",
                   "entry 1: \"channels:0\": the fraction of input channels must be a number in (0, 1]");
  ExpectParseError(R"([{"match": "h.*", "update": "channels:1.5"}])", "in (0, 1]");
  ExpectParseError(R"([{"match": "h.*", "update": "channels:nan"}])", "in (0, 1]");
  ExpectParseError(R"([{"match": "h.*", "update": "channels:"}])", "in (0, 1]");
  ExpectParseError(R"([])", "no rules");
  EXPECT_TRUE(ParseSparseUpdateJson(R"([{"match": "h.*", "update": "channels:0.25"}])", "s").ok());
}

TEST(SparseUpdateSpecTest, ReadsAFileAndNamesAMissingOne) {
  const std::filesystem::path path =
      std::filesystem::path(::testing::TempDir()) / "sparse_update_test_spec.json";
  std::ofstream(path) << R"([{"match": "ln_f.*", "update": "full"}])";
  absl::StatusOr<SparseUpdateSpec> spec = ReadSparseUpdateFile(path.string());
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->rules.size(), 1u);
  EXPECT_EQ(spec->rules[0].match, "ln_f.*");
  const absl::StatusOr<SparseUpdateSpec> missing = ReadSparseUpdateFile("/nonexistent/spec.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/spec.json"));
  EXPECT_THAT(missing.status().message(), HasSubstr("ENOENT"));
  const absl::StatusOr<SparseUpdateSpec> dir = ReadSparseUpdateFile(::testing::TempDir());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dir.status().message(), HasSubstr("is a directory"));
}

std::set<std::string> Trainable(Module& m) {
  std::set<std::string> t;
  m.ForEachParameter([&](const std::string& path, Parameter& p) {
    if (p.trainable()) t.insert(path);
  });
  return t;
}

TEST(SparseUpdateSpecTest, LaterRulesOverrideAndTrainedWeightsTrainTheirBias) {
  Gpt gpt(kTiny);
  const SparseUpdateSpec spec{{{"h.2.*", "full"},
                               {"h.2.mlp.*", "frozen"},
                               {"h.1.*", "bias_only"},
                               {"h.0.attn.c_proj.weight", "full"},
                               {"ln_f.*", "full"}}};
  absl::StatusOr<SparseUpdatePlan> plan = ApplySparseUpdate(gpt, spec);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const std::set<std::string> want = {
      "h.2.ln_1.weight", "h.2.ln_1.bias", "h.2.attn.c_attn.weight", "h.2.attn.c_attn.bias",
      "h.2.attn.c_proj.weight", "h.2.attn.c_proj.bias", "h.2.ln_2.weight", "h.2.ln_2.bias",
      // bias_only: every *.bias of block 1, LayerNorms' included.
      "h.1.ln_1.bias", "h.1.attn.c_attn.bias", "h.1.attn.c_proj.bias", "h.1.ln_2.bias",
      "h.1.mlp.c_fc.bias", "h.1.mlp.c_proj.bias",
      // a trained weight trains its layer's bias
      "h.0.attn.c_proj.weight", "h.0.attn.c_proj.bias", "ln_f.weight", "ln_f.bias"};
  EXPECT_EQ(Trainable(gpt), want);
  int64_t numel = 0;
  gpt.ForEachParameter([&](const std::string& path, Parameter& p) {
    if (want.count(path)) numel += p.shape().numel();
  });
  EXPECT_EQ(plan->trainable_numel, numel);
  EXPECT_THAT(plan->Summary(), HasSubstr("18 of"));
}

TEST(SparseUpdateSpecTest, RulesThatCannotApplyAreErrorsAndChangeNothing) {
  Gpt gpt(kTiny);
  const std::set<std::string> before = Trainable(gpt);
  absl::StatusOr<SparseUpdatePlan> none = ApplySparseUpdate(gpt, {{{"h.9.*", "full"}}});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("\"h.9.*\""));
  EXPECT_THAT(none.status().message(), HasSubstr("matches no parameter"));
  absl::StatusOr<SparseUpdatePlan> nothing =
      ApplySparseUpdate(gpt, {{{"h.*", "full"}, {"*", "frozen"}}});
  EXPECT_THAT(nothing.status().message(), HasSubstr("train no parameter"));
  // The embedding (tied to the head) has no input channels to train part of.
  absl::StatusOr<SparseUpdatePlan> channels =
      ApplySparseUpdate(gpt, {{{"h.2.*", "full"}, {"wte.weight", "channels:0.5"}}});
  EXPECT_EQ(channels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(channels.status().message(), HasSubstr("wte.weight"));
  EXPECT_THAT(channels.status().message(), HasSubstr("not the weight of a linear layer"));
  absl::StatusOr<SparseUpdatePlan> unknown = ApplySparseUpdate(gpt, {{{"h.*", "most"}}});
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown update rule \"most\""));
  EXPECT_EQ(Trainable(gpt), before);
}

// channels:F trains the first ceil(F * C_in) input channels of a linear weight; a parameter
// without input channels (a bias, a LayerNorm's scale) trains whole, and so does a weight when
// ceil(F * C_in) is all of its channels.
TEST(SparseUpdateSpecTest, ChannelsTrainTheLeadingInputChannels) {
  Gpt gpt(kTiny);
  absl::StatusOr<SparseUpdatePlan> plan = ApplySparseUpdate(
      gpt, {{{"h.2.*", "channels:0.3"}, {"h.2.mlp.c_proj.weight", "channels:1"}}});
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::map<std::string, SparseUpdatePlan::Entry> by_path;
  for (const SparseUpdatePlan::Entry& e : plan->params) by_path[e.path] = e;
  // c_fc is (4 * 32, 32): ceil(0.3 * 32) = 10 of its 32 input channels; c_attn the same.
  for (const char* path : {"h.2.mlp.c_fc.weight", "h.2.attn.c_attn.weight", "h.2.attn.c_proj.weight"}) {
    EXPECT_EQ(by_path[path].kind, SparseUpdateKind::kChannels) << path;
    EXPECT_EQ(by_path[path].channels, 10) << path;
    EXPECT_EQ(by_path[path].of_channels, 32) << path;
    EXPECT_EQ(gpt.FindParameter(path)->trained_channels(), 10) << path;
    EXPECT_TRUE(gpt.FindParameter(path)->trainable()) << path;
  }
  for (const char* path : {"h.2.mlp.c_proj.weight", "h.2.mlp.c_fc.bias", "h.2.ln_1.weight"}) {
    EXPECT_EQ(by_path[path].kind, SparseUpdateKind::kFull) << path;
    EXPECT_EQ(gpt.FindParameter(path)->trained_channels(), 0) << path;
  }
  int64_t numel = 0;
  gpt.ForEachParameter([&](const std::string& path, Parameter& p) {
    if (!absl::StartsWith(path, "h.2.")) return;
    const bool partial = by_path[path].kind == SparseUpdateKind::kChannels;
    numel += partial ? p.shape()[0] * 10 : p.shape().numel();
  });
  EXPECT_EQ(plan->trainable_numel, numel);
  EXPECT_THAT(plan->Summary(), HasSubstr("h.2.attn.c_attn.weight (10 of 32 channels)"));
  // Re-applied, a weight no rule trains in part trains whole again.
  ASSERT_TRUE(ApplySparseUpdate(gpt, {{{"h.2.*", "full"}}}).ok());
  EXPECT_EQ(gpt.FindParameter("h.2.mlp.c_fc.weight")->trained_channels(), 0);
}

Tensor Tokens(int64_t b, int64_t t, uint32_t seed) {
  Tensor x = Tensor::Empty(Shape{b, t}, DType::kI32, DefaultCpuAllocator()).value();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>(rng() % kTiny.vocab);
  return x;
}

std::unique_ptr<Program> CompileGpt(Gpt& gpt, bool keep_gradients) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-2};
  o.clip_grad_norm = 0;  // the global norm would mix in the frozen parameters' gradients
  o.seed = 7;
  o.keep_gradients = keep_gradients;
  auto p = Compile(gpt, {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

std::map<std::string, std::vector<float>> Params(Program& p) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, v] : p.parameter_values()) {
    Tensor t = p.ReadState(v, DefaultCpuAllocator()).value();
    out[name].assign(t.data<float>(), t.data<float>() + t.numel());
  }
  return out;
}

// Masks the full program's updates of the parameters `trained` does not hold: writes their
// initial values back (buffers, which no update writes, are left as they are).
void PutBackFrozen(Program& full, const std::set<std::string>& trained,
                   const std::map<std::string, std::vector<float>>& initial) {
  for (const auto& [name, v] : full.parameter_values()) {
    if (trained.count(name) || full.graph().value(v).role != ValueRole::kParameter) continue;
    const std::vector<float>& w = initial.at(name);
    Tensor t = Tensor::Empty(full.graph().value(v).type.shape, DType::kF32,
                             DefaultCpuAllocator()).value();
    std::copy(w.begin(), w.end(), t.data<float>());
    ASSERT_TRUE(full.WriteState(v, t).ok()) << name;
  }
}

TEST(SparseUpdateStepTest, EqualsAFullStepWithTheOtherUpdatesMaskedOut) {
  const std::vector<SparseUpdateSpec> specs = {
      {{{"h.2.*", "full"}, {"ln_f.*", "full"}, {"h.1.*", "bias_only"}}},  // the issue's GPT case
      {{{"*", "bias_only"}}},                                              // every bias
      {{{"h.0.attn.*", "full"}}},  // a middle layer: the backward runs down to block 0
      {{{"wte.weight", "full"}}},  // tied: the embedding and the head both feed its gradient
  };
  for (const SparseUpdateSpec& spec : specs) {
    SCOPED_TRACE(spec.rules[0].match + ": " + spec.rules[0].update);
    Gpt sparse_gpt(kTiny), full_gpt(kTiny);
    absl::StatusOr<SparseUpdatePlan> plan = ApplySparseUpdate(sparse_gpt, spec);
    ASSERT_TRUE(plan.ok()) << plan.status();
    std::unique_ptr<Program> sparse = CompileGpt(sparse_gpt, /*keep_gradients=*/true);
    std::unique_ptr<Program> full = CompileGpt(full_gpt, /*keep_gradients=*/true);
    ASSERT_TRUE(sparse && full);
    const std::set<std::string> trained = Trainable(sparse_gpt);

    // No gradient and no optimizer state for a frozen parameter, and less memory than full.
    for (const auto& [name, t] : sparse->gradients()) EXPECT_TRUE(trained.count(name)) << name;
    EXPECT_EQ(sparse->gradients().size(), trained.size());
    for (const auto& [name, v] : sparse->optimizer_state_values()) {
      const std::string param = name.substr(0, name.rfind('.'));
      EXPECT_TRUE(trained.count(param)) << name;
    }
    EXPECT_EQ(sparse->optimizer_state_values().size(), 2 * trained.size());
    EXPECT_LT(sparse->memory_report().persistent_bytes, full->memory_report().persistent_bytes);
    // A linear layer whose weight is frozen differentiates without its input: no dw, so the
    // forward does not keep x for it.
    int frozen_linears = 0, row_sums = 0;
    for (const Node& n : sparse->graph().nodes()) {
      if (n.op->kind() != OpKind::kLinearGrad) continue;
      const bool frozen_weight = absl::StartsWith(n.op->Attributes(), "no_weight_grad");
      // Note [row sums of a linear gradient]: where only the biases of the lowest trained block
      // train, its first linear gradient computes the sum of dx's rows, not dx.
      if (absl::StrContains(n.op->Attributes(), "row_sum_dx")) {
        ++row_sums;
        EXPECT_EQ(sparse->graph().value(n.outputs[0]).type.shape, Shape{kTiny.width});
        EXPECT_EQ(n.scope, spec.rules[0].match == "*" ? "h.0.attn.c_attn" : "h.1.attn.c_attn");
      }
      EXPECT_EQ(n.inputs.size(), frozen_weight ? 2u : 3u) << n.scope;
      const std::string& weight = sparse->graph().value(n.inputs[frozen_weight ? 0 : 1]).name;
      EXPECT_EQ(frozen_weight, !trained.count(weight)) << n.scope << " (" << weight << ")";
      frozen_linears += frozen_weight;
    }
    EXPECT_GT(frozen_linears, 0);
    EXPECT_EQ(row_sums, spec.rules.back().update == "bias_only" ? 1 : 0);

    // Both start from the same weights (the same seed and paths); the full run's frozen
    // parameters are put back after every step.
    const std::map<std::string, std::vector<float>> initial = Params(*full);
    EXPECT_EQ(Params(*sparse), initial);
    for (int s = 0; s < 3; ++s) {
      const std::vector<Tensor> batch = {Tokens(2, 16, 10 + s), Tokens(2, 16, 20 + s)};
      ASSERT_TRUE(sparse->Step(batch).ok());
      ASSERT_TRUE(full->Step(batch).ok());
      if (s == 0) {
        // The first step's gradients, from the same weights: Adam's update hides a gradient's
        // scale, so the kept gradients are compared themselves (the full program reaches a
        // bias below the trained weights through other kernels than the sparse one, e.g. a layer
        // norm's beta through layer_norm_grad rather than a row sum of the linear gradient).
        std::map<std::string, const Tensor*> full_grads;
        for (const auto& [name, t] : full->gradients()) full_grads[name] = &t;
        for (const auto& [name, t] : sparse->gradients()) {
          const Tensor& want = *full_grads.at(name);
          double scale = 0;
          for (int64_t i = 0; i < want.numel(); ++i) {
            scale = std::max(scale, std::abs(double{want.data<float>()[i]}));
          }
          for (int64_t i = 0; i < t.numel(); ++i) {
            ASSERT_NEAR(t.data<float>()[i], want.data<float>()[i], 1e-4 * scale + 1e-9)
                << name << "[" << i << "]";
          }
        }
      }
      PutBackFrozen(*full, trained, initial);
    }
    const std::map<std::string, std::vector<float>> a = Params(*sparse), b = Params(*full);
    for (const auto& [name, values] : a) {
      if (!trained.count(name)) {
        EXPECT_EQ(values, initial.at(name)) << name << " is frozen but changed";
        continue;
      }
      // Against the tensor's largest element: the two programs sum some gradients in another
      // order, and Adam turns a last-bit difference of a gradient near zero into a visible one
      // in that element (measured up to 5.3e-4 of the tensor's scale; a step of a wrong update
      // moves an element by about lr = 1e-2, tens of percent of these tensors' scales).
      bool changed = false;
      double scale = 0;
      for (float v : b.at(name)) scale = std::max(scale, std::abs(double{v}));
      for (size_t i = 0; i < values.size(); ++i) {
        ASSERT_NEAR(values[i], b.at(name)[i], 1e-6 + 5e-3 * scale) << name << "[" << i << "]";
        changed = changed || values[i] != initial.at(name)[i];
      }
      EXPECT_TRUE(changed) << name << " is trained but did not change";
    }
  }
}

// Without clipping and with one micro-batch, each update runs as soon as its gradient is final
// and the gradient dies there: the memory plan never holds every trained gradient at once.
TEST(SparseUpdateStepTest, EachGradientDiesAtItsUpdate) {
  Gpt gpt(kTiny);
  ASSERT_TRUE(ApplySparseUpdate(gpt, {{{"h.2.*", "full"}, {"h.1.*", "full"}, {"h.0.*", "bias_only"}}}).ok());
  std::unique_ptr<Program> p = CompileGpt(gpt, /*keep_gradients=*/false);
  ASSERT_TRUE(p);
  const std::vector<Node>& nodes = p->graph().nodes();
  const MemoryPlan& plan = p->plan();
  std::vector<int64_t> live(nodes.size() + 1, 0);
  int64_t all = 0;
  int updates = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!IsOptimizerUpdate(nodes[i])) continue;
    ++updates;
    const ValueId g = nodes[i].inputs[1];
    const auto [first, last] = plan.live[g];
    EXPECT_EQ(last, static_cast<int>(i)) << p->graph().value(g).name << " outlives its update";
    const int64_t bytes = static_cast<int64_t>(p->graph().value(g).nbytes());
    all += bytes;
    for (int k = first; k <= last; ++k) live[k] += bytes;
  }
  EXPECT_EQ(updates, static_cast<int>(Trainable(gpt).size()));
  const int64_t peak = *std::max_element(live.begin(), live.end());
  EXPECT_LT(peak, all / 2) << "gradients live at once: " << peak << " of " << all << " bytes";
}

// Sparse plans on every tier: frozen parameters keep no gradient and no optimizer state on the
// host or NVMe either, the measured peak of every tier equals the planned one, and the steps are
// bitwise those of the same sparse step in memory.
TEST(SparseUpdateStepTest, StateOffTheDeviceHoldsOnlyWhatTrains) {
  const SparseUpdateSpec spec{{{"h.2.*", "full"}, {"h.1.*", "bias_only"}}};
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "sparse_update_test_nvme";
  std::filesystem::create_directories(dir);
  std::map<std::string, std::vector<float>> reference;
  for (const bool offloaded : {false, true}) {
    SCOPED_TRACE(offloaded ? "parameters and optimizer state on NVMe, gradients on the host"
                           : "in memory");
    Gpt gpt(kTiny);
    ASSERT_TRUE(ApplySparseUpdate(gpt, spec).ok());
    const std::set<std::string> trained = Trainable(gpt);
    int64_t all_extents = 0, trained_extents = 0;
    gpt.ForEachParameter([&](const std::string& path, Parameter& p) {
      const int64_t extent = (4 * p.shape().numel() + 4095) / 4096 * 4096;
      all_extents += extent;
      if (trained.count(path)) trained_extents += extent;
    });
    TrainOptions o;
    o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
    o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-2};
    o.seed = 7;
    if (offloaded) {
      o.offload.params = o.offload.optimizer = MemoryTier::kNvme;
      o.offload.grads = MemoryTier::kHost;
      o.offload.persistence_threshold = 0;
      o.offload.io.dir = dir.string();
      o.offload.io.block_size = 16 << 10;
    }
    auto p = Compile(gpt, {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}},
                     [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                     o);
    ASSERT_TRUE(p.ok()) << p.status();
    const MemoryReport report = (*p)->memory_report();
    if (offloaded) {
      // Every parameter's extent (frozen ones too: they are weights), and two moments for each
      // trained one, nothing more.
      EXPECT_EQ(report.nvme_bytes, all_extents + 2 * trained_extents);
    }
    for (ValueId v = 0; v < (*p)->graph().num_values(); ++v) {
      const Value& value = (*p)->graph().value(v);
      if (value.role != ValueRole::kOptimizerState && value.role != ValueRole::kSpilled &&
          value.role != ValueRole::kGradient) {
        continue;
      }
      for (const std::string& frozen : {std::string("h.0."), std::string("wte."), std::string("h.1.attn.c_attn.weight")}) {
        EXPECT_FALSE(absl::StartsWith(value.name, frozen)) << value.name << " belongs to a frozen parameter";
      }
    }
    for (int s = 0; s < 3; ++s) {
      absl::StatusOr<StepStats> st = (*p)->Step({Tokens(2, 16, 10 + s), Tokens(2, 16, 20 + s)});
      ASSERT_TRUE(st.ok()) << st.status();
      for (int t = 0; t < kNumMemoryTiers; ++t) {
        EXPECT_EQ(st->peak_bytes[t], report.planned_peak[t]) << "tier " << t << ", step " << s + 1;
      }
    }
    const std::map<std::string, std::vector<float>> params = Params(**p);
    if (!offloaded) {
      reference = params;
    } else {
      EXPECT_EQ(params, reference);
    }
  }
}

// The BatchNorms of a model by path, and whether each is frozen.
std::map<std::string, bool> FrozenBatchNorms(Module& m) {
  std::map<std::string, bool> frozen;
  m.ForEachModule([&](const std::string& path, Module& child) {
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&child)) frozen[path] = bn->frozen();
  });
  return frozen;
}

std::unique_ptr<Program> CompileNet(MobileNet& net, int64_t batch) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::Sgd(/*momentum=*/0.9, /*weight_decay=*/5e-4);
  o.schedule.max_lr = 0.05;
  o.seed = 1;
  auto p = Compile(net, {{"images", Shape{batch, 1, 28, 28}}, {"labels", Shape{batch}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Forward(in[0]), in[1]); },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

TEST(SparseUpdateStepTest, CnnEqualsAFullStepWithTheOtherUpdatesMaskedOut) {
  // The issue's CNN case (the last block's weights and the biases of the last two blocks and
  // the classifier), and every bias alone (every BatchNorm frozen).
  const std::vector<SparseUpdateSpec> specs = {
      {{{"blocks.4.*", "full"}, {"blocks.3.*", "bias_only"}, {"classifier.*", "full"}}},
      {{{"*", "bias_only"}}},
  };
  constexpr int64_t kBatch = 4;
  for (const SparseUpdateSpec& spec : specs) {
    SCOPED_TRACE(spec.rules[0].match + ": " + spec.rules[0].update);
    MobileNet sparse_net(MobileNetConfig{}), full_net(MobileNetConfig{});
    absl::StatusOr<SparseUpdatePlan> plan = ApplySparseUpdate(sparse_net, spec);
    ASSERT_TRUE(plan.ok()) << plan.status();
    // A BatchNorm trains in training mode only when its weight trains.
    const std::set<std::string> trained = Trainable(sparse_net);
    const std::map<std::string, bool> frozen = FrozenBatchNorms(sparse_net);
    ASSERT_FALSE(frozen.empty());
    for (const auto& [path, is_frozen] : frozen) {
      EXPECT_EQ(is_frozen, !trained.count(path + ".weight")) << path;
    }
    EXPECT_EQ(plan->batchnorms_frozen + plan->batchnorms_training, static_cast<int>(frozen.size()));
    // The reference: every parameter trains, with the same BatchNorm modes.
    full_net.ForEachModule([&](const std::string& path, Module& m) {
      if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) bn->SetFrozen(frozen.at(path));
    });
    std::unique_ptr<Program> sparse = CompileNet(sparse_net, kBatch);
    std::unique_ptr<Program> full = CompileNet(full_net, kBatch);
    ASSERT_TRUE(sparse && full);
    EXPECT_EQ(sparse->optimizer_state_values().size(), trained.size());  // one momentum each
    EXPECT_LT(sparse->memory_report().planned_peak[0], full->memory_report().planned_peak[0]);

    const std::map<std::string, std::vector<float>> initial = Params(*full);
    std::mt19937 rng(3);
    std::normal_distribution<float> pixel(0.3f, 0.4f);
    for (int s = 0; s < 3; ++s) {
      Tensor images = Tensor::Empty(Shape{kBatch, 1, 28, 28}, DType::kF32, DefaultCpuAllocator()).value();
      Tensor labels = Tensor::Empty(Shape{kBatch}, DType::kI32, DefaultCpuAllocator()).value();
      for (int64_t i = 0; i < images.numel(); ++i) images.data<float>()[i] = pixel(rng);
      for (int64_t i = 0; i < kBatch; ++i) labels.data<int32_t>()[i] = static_cast<int32_t>(rng() % 10);
      ASSERT_TRUE(sparse->Step({images, labels}).ok());
      ASSERT_TRUE(full->Step({images, labels}).ok());
      PutBackFrozen(*full, trained, initial);
    }
    const std::map<std::string, std::vector<float>> a = Params(*sparse), b = Params(*full);
    for (const auto& [name, values] : a) {
      if (!trained.count(name)) {
        if (initial.count(name) && !absl::StrContains(name, "running_")) {
          EXPECT_EQ(values, initial.at(name)) << name << " is frozen but changed";
        }
        continue;
      }
      for (size_t i = 0; i < values.size(); ++i) {
        ASSERT_NEAR(values[i], b.at(name)[i], 1e-5 + 1e-4 * std::abs(b.at(name)[i]))
            << name << "[" << i << "]";
      }
    }
  }
}

// Whether each element of each parameter trains, from a plan: all of a kFull one, the leading
// channels of a kChannels one (dimension 1, or 0 for a depthwise weight (C, 1, KH, KW)).
std::map<std::string, std::vector<char>> TrainedElements(Module& m, const SparseUpdatePlan& plan) {
  std::map<std::string, std::vector<char>> out;
  for (const SparseUpdatePlan::Entry& e : plan.params) {
    if (e.kind == SparseUpdateKind::kFrozen) continue;
    const Shape& shape = m.FindParameter(e.path)->shape();
    std::vector<char>& mask = out[e.path];
    mask.assign(static_cast<size_t>(shape.numel()), e.kind == SparseUpdateKind::kFull);
    if (e.kind != SparseUpdateKind::kChannels) continue;
    const int dim = shape[1] == e.of_channels ? 1 : 0;
    int64_t inner = 1;
    for (int d = dim + 1; d < shape.rank(); ++d) inner *= shape[d];
    for (int64_t i = 0; i < shape.numel(); ++i) mask[i] = (i / inner) % shape[dim] < e.channels;
  }
  return out;
}

// Masks the full program's updates element by element: every element `trained` does not mark
// gets its initial value back.
void PutBackUntrained(Program& full, const std::map<std::string, std::vector<char>>& trained,
                      const std::map<std::string, std::vector<float>>& initial) {
  for (const auto& [name, v] : full.parameter_values()) {
    if (full.graph().value(v).role != ValueRole::kParameter) continue;
    Tensor t = full.ReadState(v, DefaultCpuAllocator()).value();
    const auto mask = trained.find(name);
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (mask == trained.end() || !mask->second[i]) t.data<float>()[i] = initial.at(name)[i];
    }
    ASSERT_TRUE(full.WriteState(v, t).ok()) << name;
  }
}

std::unique_ptr<Program> CompileFor(Gpt& gpt, bool keep_gradients) {
  return CompileGpt(gpt, keep_gradients);
}
std::unique_ptr<Program> CompileFor(MobileNet& net, bool keep_gradients) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::Sgd(/*momentum=*/0.9, /*weight_decay=*/5e-4);
  o.schedule.max_lr = 0.05;
  o.seed = 1;
  o.keep_gradients = keep_gradients;
  auto p = Compile(net, {{"images", Shape{4, 1, 28, 28}}, {"labels", Shape{4}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Forward(in[0]), in[1]); },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

// The masked comparison for partial channels (Note [partial channels]): the trained channels
// move as a full step's, the others keep their values, and the gradients and optimizer state
// hold the trained channels alone.
template <typename Model, typename Make, typename Batch>
void ExpectPartialChannelsMatchMaskedFull(const SparseUpdateSpec& spec, const Make& make,
                                          const Batch& batch, double tolerance) {
  std::unique_ptr<Model> sparse_ptr = make(), full_ptr = make();
  Model &sparse_model = *sparse_ptr, &full_model = *full_ptr;
  absl::StatusOr<SparseUpdatePlan> plan = ApplySparseUpdate(sparse_model, spec);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const std::map<std::string, std::vector<char>> trained = TrainedElements(sparse_model, *plan);
  const std::map<std::string, bool> frozen = FrozenBatchNorms(sparse_model);
  full_model.ForEachModule([&](const std::string& path, Module& m) {  // the same BatchNorm modes
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) bn->SetFrozen(frozen.at(path));
  });
  std::unique_ptr<Program> sparse = CompileFor(sparse_model, true);
  std::unique_ptr<Program> full = CompileFor(full_model, false);
  ASSERT_TRUE(sparse && full);
  int partial = 0;
  for (const SparseUpdatePlan::Entry& e : plan->params) {
    if (e.kind != SparseUpdateKind::kChannels) continue;
    ++partial;
    int64_t trained_numel = 0;
    for (char c : trained.at(e.path)) trained_numel += c;
    for (const auto& [name, v] : sparse->gradients()) {
      if (name == e.path) {
        EXPECT_EQ(v.numel(), trained_numel) << name;
      }
    }
    for (const auto& [name, v] : sparse->optimizer_state_values()) {
      if (name.substr(0, name.rfind('.')) == e.path) {
        EXPECT_EQ(sparse->graph().value(v).numel(), trained_numel) << name;
      }
    }
  }
  ASSERT_GT(partial, 0);
  // Each partial weight gradient reads a channel_slice that the forward computes: it comes
  // before the first node of the backward, the loss's.
  const std::vector<Node>& nodes = sparse->graph().nodes();
  int slices = 0, first_backward = static_cast<int>(nodes.size());
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    const OpKind k = nodes[i].op->kind();
    if (k == OpKind::kCrossEntropyWithGrad) first_backward = std::min(first_backward, i);
    if (k == OpKind::kChannelSlice) {
      ++slices;
      EXPECT_LT(i, first_backward) << "a channel_slice in the backward";
    }
  }
  EXPECT_EQ(slices, partial);

  const std::map<std::string, std::vector<float>> initial = Params(*full);
  EXPECT_EQ(Params(*sparse), initial);
  for (int s = 0; s < 3; ++s) {
    const std::vector<Tensor> b = batch(s);
    ASSERT_TRUE(sparse->Step(b).ok());
    ASSERT_TRUE(full->Step(b).ok());
    PutBackUntrained(*full, trained, initial);
  }
  const std::map<std::string, std::vector<float>> a = Params(*sparse), b = Params(*full);
  for (const auto& [name, values] : a) {
    if (absl::StrContains(name, "running_")) continue;  // buffers: BatchNorm statistics
    const auto mask = trained.find(name);
    double scale = 0;
    for (float v : b.at(name)) scale = std::max(scale, std::abs(double{v}));
    bool changed = false;
    for (size_t i = 0; i < values.size(); ++i) {
      if (mask == trained.end() || !mask->second[i]) {
        ASSERT_EQ(values[i], initial.at(name)[i]) << name << "[" << i << "] does not train";
        continue;
      }
      ASSERT_NEAR(values[i], b.at(name)[i], 1e-6 + tolerance * scale) << name << "[" << i << "]";
      changed = changed || values[i] != initial.at(name)[i];
    }
    if (mask != trained.end()) {
      EXPECT_TRUE(changed) << name << " trains but did not change";
    }
  }
}

TEST(SparseUpdateStepTest, PartialChannelsEqualAFullStepWithTheOtherChannelsMaskedOut) {
  const std::vector<SparseUpdateSpec> gpt_specs = {
      // the last block's linears at a quarter of their input channels, the biases before
      {{{"h.2.*", "channels:0.25"}, {"h.1.*", "bias_only"}, {"ln_f.*", "full"}}},
      // one layer in the middle: the input-gradient chain runs down to block 0
      {{{"h.0.mlp.c_proj.weight", "channels:0.3"}}},
  };
  for (const SparseUpdateSpec& spec : gpt_specs) {
    SCOPED_TRACE(spec.rules[0].match + ": " + spec.rules[0].update);
    ExpectPartialChannelsMatchMaskedFull<Gpt>(
        spec, [] { return std::make_unique<Gpt>(kTiny); },
        [](int s) { return std::vector<Tensor>{Tokens(2, 16, 10 + s), Tokens(2, 16, 20 + s)}; },
        5e-3);
  }
  // The CNN's last block: its 1x1 expand and project convolutions at their leading input
  // channels, its depthwise convolution at its own leading channels.
  const std::vector<SparseUpdateSpec> cnn_specs = {
      {{{"blocks.4.*", "channels:0.25"}, {"classifier.*", "full"}}},
      {{{"blocks.3.depthwise.conv.weight", "channels:0.5"}}},
  };
  for (const SparseUpdateSpec& spec : cnn_specs) {
    SCOPED_TRACE(spec.rules[0].match + ": " + spec.rules[0].update);
    ExpectPartialChannelsMatchMaskedFull<MobileNet>(
        spec, [] { return std::make_unique<MobileNet>(MobileNetConfig{}); },
        [](int s) {
          std::mt19937 rng(3 + s);
          std::normal_distribution<float> pixel(0.3f, 0.4f);
          Tensor images = Tensor::Empty(Shape{4, 1, 28, 28}, DType::kF32, DefaultCpuAllocator()).value();
          Tensor labels = Tensor::Empty(Shape{4}, DType::kI32, DefaultCpuAllocator()).value();
          for (int64_t i = 0; i < images.numel(); ++i) images.data<float>()[i] = pixel(rng);
          for (int64_t i = 0; i < 4; ++i) labels.data<int32_t>()[i] = static_cast<int32_t>(rng() % 10);
          return std::vector<Tensor>{images, labels};
        },
        1e-4);
  }
}

// The bytes of the activations the forward keeps for the backward: values a node before the loss
// writes and a node after it reads.
int64_t SavedForBackward(const Graph& g) {
  const std::vector<Node>& nodes = g.nodes();
  int loss = 0;
  while (nodes[loss].op->kind() != OpKind::kCrossEntropyWithGrad) ++loss;
  std::set<ValueId> written, saved;
  for (int i = 0; i < loss; ++i) written.insert(nodes[i].outputs.begin(), nodes[i].outputs.end());
  for (size_t i = loss + 1; i < nodes.size(); ++i) {
    for (ValueId v : nodes[i].inputs) {
      if (written.count(v) && g.value(v).role == ValueRole::kActivation) saved.insert(v);
    }
  }
  int64_t bytes = 0;
  for (ValueId v : saved) bytes += static_cast<int64_t>(g.value(v).nbytes());
  return bytes;
}

// Partial channels keep k of C channels of a layer's input for the backward instead of all of
// them. Block 0's four linear layers read inputs that only their weight gradients keep (ln_1's
// and ln_2's outputs, the attention's output, gelu's output: their own gradients read other
// values), so at 1/8 of the input channels the forward keeps exactly 7/8 of those four less.
TEST(SparseUpdateStepTest, PartialChannelsKeepOnlyThoseChannelsOfTheInput) {
  Gpt whole(kTiny), partial(kTiny);
  ASSERT_TRUE(ApplySparseUpdate(whole, {{{"h.0.*", "full"}}}).ok());
  ASSERT_TRUE(ApplySparseUpdate(partial, {{{"h.0.*", "channels:0.125"}}}).ok());
  std::unique_ptr<Program> a = CompileGpt(whole, false), b = CompileGpt(partial, false);
  ASSERT_TRUE(a && b);
  // The inputs of c_attn, attn.c_proj and c_fc are (2, 16, 32), mlp.c_proj's (2, 16, 128), f32:
  // 4, 4, 4 and 16 channels of them are kept.
  constexpr int64_t kRows = 2 * 16;
  EXPECT_EQ(SavedForBackward(b->graph()),
            SavedForBackward(a->graph()) - kRows * ((32 - 4) * 3 + (128 - 16)) * 4);
  EXPECT_LT(b->memory_report().arena_bytes, a->memory_report().arena_bytes);
}

// Partial channels compose with clipping, gradient accumulation (the accumulator holds the
// trained channels) and recompute (the channel_slice is recomputed with its block): the same
// spec with and without recompute gives bitwise the same losses, norms and weights.
TEST(SparseUpdateStepTest, PartialChannelsComposeWithClippingAccumulationAndRecompute) {
  std::vector<double> losses[2], norms[2];
  std::map<std::string, std::vector<float>> params[2];
  for (int recompute = 0; recompute < 2; ++recompute) {
    Gpt gpt(kTiny);
    ASSERT_TRUE(ApplySparseUpdate(gpt, {{{"h.1.*", "channels:0.5"}, {"h.0.*", "bias_only"}}}).ok());
    TrainOptions o;
    o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-2};
    o.clip_grad_norm = 0.05;  // small enough to clip
    o.micro_batches = 2;
    o.recompute = recompute == 1;
    o.seed = 7;
    auto p = Compile(gpt, {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}},
                     [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                     o);
    ASSERT_TRUE(p.ok()) << p.status();
    // Four slices (block 1's linears): in the forward, or with recompute only in the copies of
    // block 1 that the backward recomputes, after the loss.
    const std::vector<Node>& nodes = (*p)->graph().nodes();
    int slices = 0, after_loss = 0;
    bool loss_seen = false;
    for (const Node& n : nodes) {
      loss_seen = loss_seen || n.op->kind() == OpKind::kCrossEntropyWithGrad;
      if (n.op->kind() != OpKind::kChannelSlice) continue;
      ++slices;
      after_loss += loss_seen;
    }
    EXPECT_EQ(slices, 4);
    EXPECT_EQ(after_loss, recompute == 1 ? 4 : 0);
    for (int s = 0; s < 4; ++s) {
      absl::StatusOr<StepStats> st = (*p)->Step({Tokens(4, 16, 30 + s), Tokens(4, 16, 40 + s)});
      ASSERT_TRUE(st.ok()) << st.status();
      losses[recompute].push_back(st->loss);
      norms[recompute].push_back(st->grad_norm);
    }
    params[recompute] = Params(**p);
  }
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(norms[0], norms[1]);
  EXPECT_GT(norms[0][0], 0.05);
  EXPECT_EQ(params[0], params[1]);
}

// One placement of a partial-channel run with state off the device, and what it trains with.
struct PartialPlacement {
  MemoryTier params = MemoryTier::kDevice, grads = MemoryTier::kDevice,
             optimizer = MemoryTier::kDevice;
  double clip = 0;
  int micro_batches = 1;
  std::string Name() const {
    return absl::StrCat("params ", MemoryTierName(params), ", grads ", MemoryTierName(grads),
                        ", optimizer ", MemoryTierName(optimizer), ", clip ", clip,
                        ", micro-batches ", micro_batches);
  }
};

struct PlacedRun {
  std::vector<double> losses, norms;
  std::map<std::string, std::vector<float>> state;  // parameters and optimizer state, by name
  int partial_offloaded = 0;  // offloaded updates that write part of a parameter's channels
  int partial_from_copy = 0;  // partial updates that read a fetched copy of their parameter
};

// Compiles `model` with `o` (placed as `where`, or all in memory), runs `steps` steps of
// batch(step, rows) with the measured peak of every tier checked against the plan each step, and
// returns what it trained.
template <typename Batch>
PlacedRun RunPlaced(Module& model, const std::vector<InputSpec>& inputs, const LossFn& loss,
                    TrainOptions o, const PartialPlacement& where, bool in_memory,
                    const Batch& batch, int steps) {
  PlacedRun r;
  o.clip_grad_norm = where.clip;
  o.micro_batches = where.micro_batches;
  if (!in_memory) {
    const std::filesystem::path dir =
        std::filesystem::path(::testing::TempDir()) / "sparse_update_test_partial";
    std::filesystem::create_directories(dir);
    o.offload.params = where.params;
    o.offload.grads = where.grads;
    o.offload.optimizer = where.optimizer;
    o.offload.persistence_threshold = 0;
    o.offload.io.dir = dir.string();
    o.offload.io.block_size = 4096;  // chunks of 1024 floats: partial weights span several
  }
  auto p = Compile(model, inputs, loss, o);  // shapes of one micro-batch
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return r;
  const Graph& g = (*p)->graph();
  for (const Node& n : g.nodes()) {
    if (!IsOptimizerUpdate(n) || ops::UpdateSliceOf(*n.op).whole()) continue;
    r.partial_offloaded += n.op->kind() == OpKind::kOffloadedUpdate;
    r.partial_from_copy += g.value(n.inputs[0]).role == ValueRole::kStaged;
  }
  const MemoryReport report = (*p)->memory_report();
  for (int s = 0; s < steps; ++s) {
    absl::StatusOr<StepStats> st = (*p)->Step(batch(s, inputs[0].shape[0] * where.micro_batches));
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) return r;
    r.losses.push_back(st->loss);
    r.norms.push_back(st->grad_norm);
    for (int t = 0; t < kNumMemoryTiers; ++t) {
      EXPECT_EQ(st->peak_bytes[t], report.planned_peak[t]) << "tier " << t << ", step " << s + 1;
    }
  }
  for (const auto* named : {&(*p)->parameter_values(), &(*p)->optimizer_state_values()}) {
    for (const auto& [name, v] : *named) {
      Tensor t = (*p)->ReadState(v, DefaultCpuAllocator()).value();
      r.state[name].assign(t.data<float>(), t.data<float>() + t.numel());
    }
  }
  return r;
}

// Every placement trains bitwise as the same options with everything in memory, and the
// partial weights' updates were offloaded where their state is off the device.
template <typename Make, typename Batch>
void ExpectPartialChannelsTrainTheSameWherever(const SparseUpdateSpec& spec, const Make& make,
                                               const std::vector<InputSpec>& inputs,
                                               const TrainOptions& o,
                                               const std::vector<PartialPlacement>& placements,
                                               const Batch& batch) {
  for (const PartialPlacement& where : placements) {
    SCOPED_TRACE(where.Name());
    PlacedRun runs[2];
    for (const bool in_memory : {true, false}) {
      auto model = make();
      ASSERT_TRUE(ApplySparseUpdate(*model, spec).ok());
      const LossFn loss = [&](absl::Span<const Var> in) { return model->Loss(in[0], in[1]); };
      runs[in_memory ? 0 : 1] = RunPlaced(*model, inputs, loss, o, where, in_memory, batch, 3);
    }
    const PlacedRun &memory = runs[0], &placed = runs[1];
    ASSERT_EQ(placed.losses.size(), 3u);
    EXPECT_EQ(placed.losses, memory.losses);
    EXPECT_EQ(placed.norms, memory.norms);
    EXPECT_FALSE(memory.state.empty());
    for (const auto& [name, values] : memory.state) {
      const auto it = placed.state.find(name);
      ASSERT_NE(it, placed.state.end()) << name;
      EXPECT_TRUE(it->second == values) << name << " differs";
    }
    EXPECT_EQ(memory.partial_offloaded, 0);
    if (where.optimizer != MemoryTier::kDevice) {
      EXPECT_GT(placed.partial_offloaded, 0) << "no partial update ran over offloaded state";
    }
    if (where.params == MemoryTier::kNvme) {
      EXPECT_GT(placed.partial_from_copy, 0) << "no partial update read a fetched parameter";
    }
  }
}

// Gpt and MobileNet behind the same Loss(inputs, targets).
struct GptModel : Gpt {
  using Gpt::Gpt;
  Var Loss(Var ids, Var targets) { return ops::CrossEntropy(Forward(ids), targets); }
};
struct CnnModel : MobileNet {
  using MobileNet::MobileNet;
  Var Loss(Var images, Var labels) { return ops::CrossEntropy(Forward(images), labels); }
};

// Note [partial channels offloaded] (graph/passes/schedule_offload.cc): partial-channel weights
// with their parameters, gradients and optimizer state on the host or NVMe, with clipping
// (deferred updates) and gradient accumulation (the update zeroes the accumulator), train
// bitwise as in memory, and the measured peak of every tier is the planned one. The GPT is wide
// enough that its partial weights span several chunks of the offloaded update, with chunk ends
// inside a run of trained channels (runs of 20 and 48 of 64, of 192 of 256).
TEST(SparseUpdateStepTest, PartialChannelsWithStateOffTheDeviceTrainBitwiseAsInMemory) {
  constexpr MemoryTier kDevice = MemoryTier::kDevice, kHost = MemoryTier::kHost,
                       kNvme = MemoryTier::kNvme;
  constexpr GptConfig kWide{.vocab = 64, .block_size = 16, .layers = 2, .width = 64, .heads = 4};
  const SparseUpdateSpec gpt_spec{{{"h.1.*", "channels:0.75"},
                                   {"h.0.mlp.c_fc.weight", "channels:0.3"},
                                   {"h.0.*.bias", "bias_only"}}};
  TrainOptions adamw;
  adamw.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  adamw.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-2};
  adamw.seed = 7;
  ExpectPartialChannelsTrainTheSameWherever(
      gpt_spec, [&] { return std::make_unique<GptModel>(kWide); },
      {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}}, adamw,
      {{.params = kHost, .grads = kHost, .optimizer = kHost},
       {.params = kNvme, .grads = kHost, .optimizer = kNvme, .clip = 1.0},
       {.params = kDevice, .grads = kDevice, .optimizer = kNvme, .micro_batches = 2},
       {.params = kNvme, .grads = kNvme, .optimizer = kNvme, .clip = 0.05, .micro_batches = 2},
       {.params = kNvme, .grads = kNvme, .optimizer = kDevice}},
      [](int s, int64_t rows) {
        return std::vector<Tensor>{Tokens(rows, 16, 10 + s), Tokens(rows, 16, 20 + s)};
      });
  // SGD with momentum and weight decay (which feeds the parameter into the momentum buffer) on
  // the CNN's 1x1 convolutions and a depthwise one.
  TrainOptions sgd;
  sgd.optimizer = OptimizerOptions::Sgd(/*momentum=*/0.9, /*weight_decay=*/5e-4);
  sgd.schedule.max_lr = 0.05;
  sgd.seed = 1;
  const SparseUpdateSpec cnn_spec{{{"blocks.4.*", "channels:0.25"},
                                   {"blocks.3.depthwise.conv.weight", "channels:0.5"},
                                   {"classifier.*", "full"}}};
  ExpectPartialChannelsTrainTheSameWherever(
      cnn_spec, [] { return std::make_unique<CnnModel>(MobileNetConfig{}); },
      {{"images", Shape{2, 1, 28, 28}}, {"labels", Shape{2}, DType::kI32}}, sgd,
      {{.params = kHost, .grads = kHost, .optimizer = kHost},
       {.params = kNvme, .grads = kHost, .optimizer = kNvme, .clip = 1.0},
       {.params = kDevice, .grads = kNvme, .optimizer = kHost, .micro_batches = 2}},
      [](int s, int64_t rows) {
        std::mt19937 rng(3 + s);
        std::normal_distribution<float> pixel(0.3f, 0.4f);
        Tensor images =
            Tensor::Empty(Shape{rows, 1, 28, 28}, DType::kF32, DefaultCpuAllocator()).value();
        Tensor labels = Tensor::Empty(Shape{rows}, DType::kI32, DefaultCpuAllocator()).value();
        for (int64_t i = 0; i < images.numel(); ++i) images.data<float>()[i] = pixel(rng);
        for (int64_t i = 0; i < rows; ++i) labels.data<int32_t>()[i] = static_cast<int32_t>(rng() % 10);
        return std::vector<Tensor>{images, labels};
      });
}

}  // namespace
}  // namespace strata::graph
