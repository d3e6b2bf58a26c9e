// Parameter groups (Note [parameter groups] in graph/param_groups.h): the path globs, first match
// wins, the validation and the errors that name a group, and a compiled SGD and AdamW step whose
// every parameter moves as a double-precision update with its group's lr scale and weight decay.
#include "graph/param_groups.h"

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"

namespace strata::graph {
namespace {

using ::testing::HasSubstr;

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};

TEST(PathMatchesTest, GlobsOverDottedPaths) {
  EXPECT_TRUE(PathMatches("*.bias", "h.0.attn.c_attn.bias"));
  EXPECT_TRUE(PathMatches("*.bias", "ln_f.bias"));
  EXPECT_FALSE(PathMatches("*.bias", "h.0.attn.c_attn.weight"));
  EXPECT_FALSE(PathMatches("*.bias", "bias_scale"));  // the dot is literal
  EXPECT_TRUE(PathMatches("h.*.ln_*", "h.11.ln_2.weight"));  // * crosses dots
  EXPECT_FALSE(PathMatches("h.*.ln_*", "ln_f.weight"));
  EXPECT_TRUE(PathMatches("h.?.mlp.*", "h.3.mlp.c_fc.weight"));
  EXPECT_FALSE(PathMatches("h.?.mlp.*", "h.10.mlp.c_fc.weight"));
  EXPECT_TRUE(PathMatches("h.[01].*", "h.1.ln_1.bias"));
  EXPECT_FALSE(PathMatches("h.[01].*", "h.2.ln_1.bias"));
  EXPECT_TRUE(PathMatches("wte.weight", "wte.weight"));
  EXPECT_FALSE(PathMatches("wte", "wte.weight"));  // the whole path must match
}

TEST(ParamGroupsTest, ValidationNamesTheGroupAndTheField) {
  struct Case {
    ParamGroup group;
    const char* error;
  };
  const Case cases[] = {
      {{.match = ""}, "group 2: the path pattern is empty"},
      {{.match = "*.bias", .lr_scale = -1}, "group 2 ('*.bias'): lr_scale = -1 must be finite and >= 0"},
      {{.match = "*.bias", .lr_scale = NAN}, "group 2 ('*.bias'): lr_scale = nan"},
      {{.match = "*.bias", .lr_scale = INFINITY}, "lr_scale = inf must be finite"},
      {{.match = "wte.*", .weight_decay = -0.5},
       "group 2 ('wte.*'): weight_decay = -0.5 must be finite and >= 0"},
      {{.match = "wte.*", .weight_decay = NAN}, "group 2 ('wte.*'): weight_decay = nan"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.error);
    OptimizerOptions o = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
    o.groups = {{.match = "h.0.*", .lr_scale = 0.5}, c.group};
    const absl::Status s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(c.error));
  }
  OptimizerOptions ok = OptimizerOptions::Sgd(0, 0);
  ok.groups = {{.match = "*", .lr_scale = 0, .weight_decay = 0}};
  EXPECT_TRUE(ok.Validate().ok());
}

TEST(ParamGroupsTest, FirstMatchWinsAndTheRestKeepTheDefaults) {
  Gpt gpt(kTiny);
  OptimizerOptions o = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.groups = {{.match = "h.0.*", .lr_scale = 0},
              {.match = "*.bias", .lr_scale = 2, .weight_decay = 0.5},
              {.match = "wte.*", .lr_scale = 0.5}};
  absl::StatusOr<ParamGroupPlan> plan = ResolveParamGroups(gpt, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::map<std::string, ParamGroupPlan::Param> by_path;
  for (const ParamGroupPlan::Param& p : plan->params) by_path[p.path] = p;
  // h.0's bias is h.0's: the first group takes it.
  EXPECT_EQ(by_path.at("h.0.attn.c_attn.bias").group, 0);
  EXPECT_EQ(by_path.at("h.0.attn.c_attn.bias").lr_scale, 0);
  EXPECT_EQ(by_path.at("h.0.attn.c_attn.bias").weight_decay, 0);     // 1-D: no default decay
  EXPECT_EQ(by_path.at("h.0.attn.c_attn.weight").weight_decay, 0.1);  // 2-D: the default
  EXPECT_EQ(by_path.at("h.1.attn.c_attn.bias").group, 1);
  EXPECT_EQ(by_path.at("h.1.attn.c_attn.bias").weight_decay, 0.5);
  EXPECT_EQ(by_path.at("ln_f.bias").lr_scale, 2);
  EXPECT_EQ(by_path.at("wte.weight").group, 2);
  EXPECT_EQ(by_path.at("wte.weight").lr_scale, 0.5);
  EXPECT_EQ(by_path.at("wte.weight").weight_decay, 0.1);  // no weight decay of its own
  EXPECT_EQ(by_path.at("wpe.weight").group, -1);
  EXPECT_EQ(by_path.at("wpe.weight").weight_decay, 0.1);
  EXPECT_EQ(by_path.at("ln_f.weight").weight_decay, 0);
  // A transformer block has 12 tensors, 6 of them biases; ln_f has 1 bias.
  EXPECT_EQ(plan->groups[0].tensors, 12);
  EXPECT_EQ(plan->groups[1].tensors, 7);
  EXPECT_EQ(plan->groups[2].tensors, 1);
  EXPECT_EQ(plan->groups[2].numel, 64 * 32);
  EXPECT_EQ(plan->rest.tensors, 1 + 6 + 1);  // wpe, h.1's weights, ln_f.weight
  const std::string summary = plan->Summary();
  EXPECT_THAT(summary, HasSubstr("  h.0.* -> 12 tensors, "));
  EXPECT_THAT(summary, HasSubstr("  *.bias -> 7 tensors, "));
  EXPECT_THAT(summary, HasSubstr("lr x2, weight decay 0.5\n"));
  EXPECT_THAT(summary, HasSubstr("  wte.* -> 1 tensors, 2048 elements: lr x0.5, weight decay 0.1 "
                                 "on 1 of them (the default)\n"));
  EXPECT_THAT(summary, HasSubstr("  (no group) -> 8 tensors, "));

  OptimizerOptions none = o;
  none.groups.clear();
  plan = ResolveParamGroups(gpt, none);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Summary(), "");
}

TEST(ParamGroupsTest, AGroupThatTakesNothingIsAnErrorNamingIt) {
  TrainOptions t;
  t.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  t.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-3};
  auto compile = [&](std::vector<ParamGroup> groups) {
    Gpt gpt(kTiny);
    t.optimizer.groups = std::move(groups);
    return Compile(gpt, {{"ids", Shape{1, 16}, DType::kI32}, {"targets", Shape{1, 16}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                   t);
  };
  auto typo = compile({{.match = "*.bias", .weight_decay = 0}, {.match = "h.*.atn.*", .lr_scale = 0.1}});
  ASSERT_FALSE(typo.ok());
  EXPECT_EQ(typo.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(typo.status().message(), HasSubstr("group 2 ('h.*.atn.*') matches no parameter"));
  auto shadowed = compile({{.match = "h.*", .lr_scale = 0.1}, {.match = "h.1.*", .lr_scale = 0}});
  ASSERT_FALSE(shadowed.ok());
  EXPECT_THAT(shadowed.status().message(),
              HasSubstr("group 2 ('h.1.*') takes no parameter: earlier groups take all 12 it matches"));
  auto negative = compile({{.match = "*.bias", .lr_scale = -0.1}});
  ASSERT_FALSE(negative.ok());
  EXPECT_THAT(negative.status().message(), HasSubstr("group 1 ('*.bias'): lr_scale = -0.1"));
}

TEST(ParamGroupsTest, AGroupOfFrozenParametersIsCountedApart) {
  Gpt gpt(kTiny);
  gpt.ForEachParameter([](const std::string& path, Parameter& p) {
    if (path == "wpe.weight") p.set_trainable(false);
  });
  OptimizerOptions o = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.groups = {{.match = "wpe.*", .lr_scale = 0.1}};
  absl::StatusOr<ParamGroupPlan> plan = ResolveParamGroups(gpt, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->groups[0].tensors, 0);
  EXPECT_EQ(plan->groups[0].frozen_tensors, 1);
  EXPECT_THAT(plan->Summary(), HasSubstr("wpe.* -> 0 tensors, 0 elements (1 more frozen)"));
}

// The groups of the step tests below, and what each parameter of the tiny GPT should get from
// them, written out by hand rather than through the globs.
std::vector<ParamGroup> StepGroups() {
  return {{.match = "h.0.*", .lr_scale = 0},  // frozen by its lr: bitwise unchanged
          {.match = "*.bias", .lr_scale = 2.5, .weight_decay = 0.5},
          {.match = "h.*.ln_?.weight", .weight_decay = 0.25},  // 1-D, decayed by its group
          {.match = "wte.*", .lr_scale = 0.5}};
}
struct Expected {
  double lr_scale, weight_decay;
};
Expected ExpectedFor(const std::string& path, int rank, double default_wd) {
  const double by_rank = rank >= 2 ? default_wd : 0.0;
  if (path.rfind("h.0.", 0) == 0) return {0, by_rank};
  if (path.size() > 5 && path.compare(path.size() - 5, 5, ".bias") == 0) return {2.5, 0.5};
  if (path == "h.1.ln_1.weight" || path == "h.1.ln_2.weight") return {1, 0.25};
  if (path == "wte.weight") return {0.5, by_rank};
  return {1, by_rank};
}

Tensor Tokens(int64_t b, int64_t t, uint32_t seed) {
  Tensor x = Tensor::Empty(Shape{b, t}, DType::kI32, DefaultCpuAllocator()).value();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>(rng() % kTiny.vocab);
  return x;
}

// One step of the tiny GPT with the groups above; every parameter is compared with the update
// computed in double from its value before the step and its gradient (kept by the Program).
void ExpectOneStepMatchesTheReference(const OptimizerOptions& optimizer) {
  constexpr double kLr = 1e-2, kDefaultWd = 0.1;
  Gpt gpt(kTiny);
  TrainOptions t;
  t.optimizer = optimizer;
  t.optimizer.weight_decay = kDefaultWd;
  t.optimizer.groups = StepGroups();
  t.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = kLr};
  t.keep_gradients = true;
  t.seed = 7;
  auto p = Compile(gpt, {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                   t);
  ASSERT_TRUE(p.ok()) << p.status();
  Program& program = **p;
  std::map<std::string, std::vector<float>> before;
  for (const auto& [path, tensor] : program.parameters()) {
    before[path].assign(tensor.data<float>(), tensor.data<float>() + tensor.numel());
  }
  absl::StatusOr<StepStats> st = program.Step({Tokens(2, 16, 1), Tokens(2, 16, 2)});
  ASSERT_TRUE(st.ok()) << st.status();
  ASSERT_EQ(st->lr, kLr);
  std::map<std::string, const Tensor*> grads;
  for (const auto& [path, g] : program.gradients()) grads[path] = &g;
  int checked = 0, frozen = 0;
  for (const auto& [path, tensor] : program.parameters()) {
    SCOPED_TRACE(path);
    ASSERT_TRUE(grads.count(path));
    const Expected e = ExpectedFor(path, tensor.shape().rank(), kDefaultWd);
    const double lr = kLr * e.lr_scale;
    const float* g = grads.at(path)->data<float>();
    const float* now = tensor.data<float>();
    const std::vector<float>& was = before.at(path);
    for (int64_t i = 0; i < tensor.numel(); ++i) {
      if (e.lr_scale == 0) {
        ASSERT_EQ(now[i], was[i]) << "element " << i;  // exactly, not nearly
        continue;
      }
      const double p0 = was[i], gi = g[i];
      double want;
      if (optimizer.kind == OptimizerOptions::kSgd) {
        want = p0 - lr * (gi + e.weight_decay * p0);  // torch.optim.SGD, no momentum
      } else {
        // The first AdamW step: the bias-corrected moments are g and g^2.
        want = p0 * (1 - lr * e.weight_decay) - lr * gi / (std::abs(gi) + optimizer.eps);
      }
      ASSERT_NEAR(now[i], want, 2e-6 * (std::abs(want) + lr)) << "element " << i;
    }
    ++checked;
    frozen += e.lr_scale == 0 ? 1 : 0;
  }
  EXPECT_EQ(checked, 2 + 2 * 12 + 2);
  EXPECT_EQ(frozen, 12);
}

TEST(ParamGroupsStepTest, SgdMovesEachParameterByItsGroupsLrAndWeightDecay) {
  ExpectOneStepMatchesTheReference(OptimizerOptions::Sgd(/*momentum=*/0, /*weight_decay=*/0.1));
}

TEST(ParamGroupsStepTest, AdamWMovesEachParameterByItsGroupsLrAndWeightDecay) {
  ExpectOneStepMatchesTheReference(OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1));
}

// The groups are in the update nodes, where the dump shows them; an update without a group
// shows no lr_scale, as before groups existed.
TEST(ParamGroupsStepTest, TheDumpShowsEachUpdatesLrScale) {
  Gpt gpt(kTiny);
  TrainOptions t;
  t.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  t.optimizer.groups = {{.match = "wte.*", .lr_scale = 0.25}};
  t.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-3};
  t.dump_graph = true;
  auto p = Compile(gpt, {{"ids", Shape{1, 16}, DType::kI32}, {"targets", Shape{1, 16}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                   t);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string& dump = (*p)->dump();
  const size_t optimizer = dump.find("== after optimizer ==");
  ASSERT_NE(optimizer, std::string::npos);
  const std::string after = dump.substr(optimizer, dump.find("== after", optimizer + 1) - optimizer);
  int scaled = 0, updates = 0;
  for (size_t at = after.find("adamw_update"); at != std::string::npos;
       at = after.find("adamw_update", at + 1)) {
    ++updates;
    const std::string line = after.substr(at, after.find('\n', at) - at);
    if (line.find("lr_scale=0.25") != std::string::npos) ++scaled;
  }
  EXPECT_EQ(updates, 2 + 2 * 12 + 2);
  EXPECT_EQ(scaled, 1);
}

}  // namespace
}  // namespace strata::graph
