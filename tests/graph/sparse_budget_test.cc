// Budget-driven sparse updates (graph/sparse_budget.h): the blocks and units of a model, the
// greedy choice against a brute force over every combination on synthetic instances (fake
// contributions and fake planned peaks), and on a tiny GPT with measured contributions and real
// planned peaks checked by planning the chosen spec again on a fresh model.
#include "graph/sparse_budget.h"

#include <algorithm>
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

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 3, .width = 32, .heads = 4};

TEST(SparseBudgetBlocksTest, GptBlocksAreTopLevelModulesAndTransformerBlocks) {
  Gpt gpt(kTiny);
  std::vector<std::string> paths, matches;
  std::vector<bool> bias, channels;
  for (const SparseBudgetBlock& b : SparseBudgetBlocks(gpt)) {
    paths.push_back(b.path);
    matches.push_back(b.match);
    bias.push_back(b.has_bias);
    channels.push_back(b.has_channels);
  }
  EXPECT_THAT(paths, ElementsAre("wte", "wpe", "h.0", "h.1", "h.2", "ln_f"));
  EXPECT_THAT(matches, ElementsAre("wte.*", "wpe.*", "h.0.*", "h.1.*", "h.2.*", "ln_f.*"));
  EXPECT_THAT(bias, ElementsAre(false, false, true, true, true, true));
  // Only the blocks' linear layers train part of their channels (not the embeddings, not ln_f).
  EXPECT_THAT(channels, ElementsAre(false, false, true, true, true, false));
}

TEST(SparseBudgetUnitsTest, BiasUnitsGrowFromTheLastBlockAndRatioOneIsFull) {
  const std::vector<SparseBudgetBlock> blocks = {
      {"a", "a.*", true, true}, {"b", "b.*", false, false}, {"c", "c.*", true, true}};
  const std::vector<SparseBudgetUnit> units = SparseBudgetUnits(blocks, {1.0, 0.25});
  // b has no weight that trains part of its channels: no channels:0.25 unit for it.
  ASSERT_EQ(units.size(), 2u + 2 + 1 + 2);
  EXPECT_EQ(units[0].kind, SparseBudgetUnit::kBiases);
  ASSERT_EQ(units[0].rules.size(), 1u);
  EXPECT_EQ(units[0].rules[0].match, "c.*");
  EXPECT_EQ(units[0].rules[0].update, "bias_only");
  ASSERT_EQ(units[1].rules.size(), 2u);  // b has no bias: k = 2 reaches a
  EXPECT_EQ(units[1].rules[0].match, "a.*");
  EXPECT_EQ(units[1].rules[1].match, "c.*");
  EXPECT_EQ(units[1].index, 2);
  EXPECT_EQ(units[2].kind, SparseBudgetUnit::kWeights);
  EXPECT_EQ(units[2].rules[0].match, "a.*");
  EXPECT_EQ(units[2].rules[0].update, "full");
  EXPECT_EQ(units[3].rules[0].update, "channels:0.25");
  EXPECT_EQ(units[4].name, "b full");
  EXPECT_EQ(units[6].name, "c channels:0.25");
}

// A synthetic instance over blocks b0..b{L-1}, all with biases. Planned peak of a spec: weights,
// plus a cost per bias rule and per weight rule (by ratio), plus, unless additive, the largest
// of the weight rules' activation costs (activations of two blocks are not all live at once).
struct Instance {
  int blocks = 4;
  std::vector<double> ratios = {1.0, 0.5};
  int64_t weights = 1000;
  std::vector<int64_t> bias_cost;
  std::vector<std::map<double, int64_t>> weight_cost, activation;
  bool additive = false;
  std::vector<SparseBudgetUnit> units;

  int BlockOf(const std::string& match) const { return match[1] - '0'; }
  double RatioOf(const std::string& update) const {
    return update == "full" ? 1.0 : std::stod(update.substr(9));
  }
  absl::StatusOr<int64_t> Peak(const SparseUpdateSpec& spec) const {
    int64_t bytes = weights, act = 0;
    for (const SparseUpdateRule& r : spec.rules) {
      const int b = BlockOf(r.match);
      if (r.update == "bias_only") {
        bytes += bias_cost[b];
      } else {
        const double ratio = RatioOf(r.update);
        bytes += weight_cost[b].at(ratio);
        act = additive ? act + activation[b].at(ratio) : std::max(act, activation[b].at(ratio));
      }
    }
    return bytes + act;
  }
};

Instance MakeInstance(uint64_t seed, bool additive, bool equal_weight_costs) {
  Instance in;
  in.additive = additive;
  if (equal_weight_costs) in.ratios = {1.0};
  std::mt19937_64 rng(seed);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
  };
  std::vector<SparseBudgetBlock> blocks;
  for (int b = 0; b < in.blocks; ++b) {
    const std::string name = "b" + std::to_string(b);
    blocks.push_back({name, name + ".*", true});
    in.bias_cost.push_back(uniform(1, 20));
    in.weight_cost.emplace_back();
    in.activation.emplace_back();
    for (double r : in.ratios) {
      in.weight_cost.back()[r] = equal_weight_costs ? 50 : uniform(10, 100) * r + 1;
      in.activation.back()[r] = equal_weight_costs ? 0 : uniform(0, 80);
    }
  }
  in.units = SparseBudgetUnits(blocks, in.ratios);
  for (SparseBudgetUnit& u : in.units) {
    u.contribution = static_cast<double>(uniform(-20, 100)) / 100.0;
    u.planned_bytes = in.Peak(SparseUpdateSpec{u.rules}).value();
  }
  return in;
}

// The best summed contribution over every bias choice and every choice of at most one ratio per
// block whose combined planned peak fits; -1 when nothing fits.
double BruteForce(const Instance& in, int64_t budget) {
  const int options = static_cast<int>(in.ratios.size()) + 1;
  int combos = 1;
  for (int b = 0; b < in.blocks; ++b) combos *= options;
  double best = -1;
  std::vector<const SparseBudgetUnit*> bias_units = {nullptr};
  for (const SparseBudgetUnit& u : in.units) {
    if (u.kind == SparseBudgetUnit::kBiases) bias_units.push_back(&u);
  }
  for (const SparseBudgetUnit* bias : bias_units) {
    for (int c = 0; c < combos; ++c) {
      SparseUpdateSpec spec;
      double total = 0;
      if (bias != nullptr) {
        spec.rules = bias->rules;
        total += bias->contribution;
      }
      int code = c;
      for (int b = 0; b < in.blocks; ++b, code /= options) {
        if (code % options == 0) continue;
        const double ratio = in.ratios[code % options - 1];
        for (const SparseBudgetUnit& u : in.units) {
          if (u.kind == SparseBudgetUnit::kWeights && u.index == b && u.ratio == ratio) {
            spec.rules.insert(spec.rules.end(), u.rules.begin(), u.rules.end());
            total += u.contribution;
          }
        }
      }
      if (spec.rules.empty() || in.Peak(spec).value() > budget) continue;
      best = std::max(best, total);
    }
  }
  return best;
}

double SummedContribution(const SparseBudgetChoice& c) {
  double total = 0;
  for (size_t i = 0; i < c.units.size(); ++i) {
    if (c.chosen[i]) total += c.units[i].contribution;
  }
  return total;
}

TEST(ChooseSparseUpdateTest, FeasibleNeverAboveTheBruteForceAndMonotoneInTheBudget) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const Instance in = MakeInstance(seed, /*additive=*/false, /*equal_weight_costs=*/false);
    auto peak = [&](const SparseUpdateSpec& s) { return in.Peak(s); };
    double previous = 0;
    for (int64_t budget = 1000; budget <= 1600; budget += 15) {
      const double brute = BruteForce(in, budget);
      absl::StatusOr<SparseBudgetChoice> c = ChooseSparseUpdate(in.units, budget, peak);
      if (!c.ok()) {
        EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
        EXPECT_EQ(previous, 0) << "seed " << seed << " budget " << budget;
        continue;
      }
      EXPECT_LE(in.Peak(c->spec).value(), budget) << "seed " << seed;
      EXPECT_EQ(c->planned_peak, in.Peak(c->spec).value());
      EXPECT_NEAR(c->contribution, SummedContribution(*c), 1e-12);
      EXPECT_LE(c->contribution, brute + 1e-12) << "seed " << seed << " budget " << budget;
      EXPECT_GE(c->contribution, previous - 1e-12) << "seed " << seed << " budget " << budget;
      for (size_t i = 0; i < c->units.size(); ++i) {
        if (c->chosen[i]) {
          EXPECT_GT(c->units[i].contribution, 0) << c->units[i].name;
        }
      }
      previous = c->contribution;
    }
  }
}

// Additive memory and weight units of equal cost: the best m weight units are the m with the
// largest contributions, the first m of the greedy's order, so the greedy is optimal.
TEST(ChooseSparseUpdateTest, EqualsTheBruteForceWhereTheGreedyIsOptimal) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const Instance in = MakeInstance(seed, /*additive=*/true, /*equal_weight_costs=*/true);
    auto peak = [&](const SparseUpdateSpec& s) { return in.Peak(s); };
    for (int64_t budget = 1000; budget <= 1300; budget += 7) {
      const double brute = BruteForce(in, budget);
      absl::StatusOr<SparseBudgetChoice> c = ChooseSparseUpdate(in.units, budget, peak);
      if (brute < 0) {
        EXPECT_FALSE(c.ok()) << "seed " << seed << " budget " << budget;
        continue;
      }
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_NEAR(c->contribution, brute, 1e-12) << "seed " << seed << " budget " << budget;
    }
  }
}

TEST(ChooseSparseUpdateTest, ErrorsNameTheBudgetAndTheSmallestThatWorks) {
  Instance in = MakeInstance(3, /*additive=*/true, /*equal_weight_costs=*/true);
  for (SparseBudgetUnit& u : in.units) u.contribution = 0.5;
  auto peak = [&](const SparseUpdateSpec& s) { return in.Peak(s); };
  const int64_t smallest = 1000 + in.bias_cost[3];  // the last block's biases alone
  absl::StatusOr<SparseBudgetChoice> c = ChooseSparseUpdate(in.units, 999, peak);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("sparse budget 999 bytes"));
  EXPECT_THAT(c.status().message(), HasSubstr("plans " + std::to_string(smallest) + " bytes"));
  ASSERT_TRUE(ChooseSparseUpdate(in.units, smallest, peak).ok());

  for (SparseBudgetUnit& u : in.units) u.contribution = -0.1;
  in.units[0].contribution = 0;
  c = ChooseSparseUpdate(in.units, 1 << 20, peak);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.status().message(), HasSubstr("no unit lowered the held-out loss"));
}

TEST(SparseBudgetUnitsTest, ChannelRatiosParseAndNameWhatIsWrong) {
  absl::StatusOr<std::vector<double>> r = ParseChannelRatios("0.25,0.5,1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, ElementsAre(0.25, 0.5, 1.0));
  for (const char* bad : {"0", "1.5", "x", "0.5,,1", "", "nan"}) {
    EXPECT_THAT(ParseChannelRatios(bad).status().message(), HasSubstr("must be a number in (0, 1]"))
        << bad;
  }
  EXPECT_THAT(ParseChannelRatios("0.5,1,0.5").status().message(), HasSubstr("appears twice"));
}

TEST(MeasureContributionsTest, ContributionIsTheLossBeforeMinusAfter) {
  std::vector<SparseBudgetUnit> units =
      SparseBudgetUnits({{"a", "a.*", true}, {"b", "b.*", true}}, {1.0});
  SparseBudgetCallbacks cb;
  std::vector<int64_t> steps_seen;
  cb.held_out_loss = [&](const SparseUpdateSpec& spec, int64_t steps) -> absl::StatusOr<double> {
    steps_seen.push_back(steps);
    return steps == 0 ? 2.0 : 2.0 - 0.1 * static_cast<double>(spec.rules.size());
  };
  cb.planned_peak = [](const SparseUpdateSpec& spec) -> absl::StatusOr<int64_t> {
    return 100 * static_cast<int64_t>(spec.rules.size());
  };
  ASSERT_TRUE(MeasureContributions(units, 3, cb).ok());
  EXPECT_THAT(steps_seen, ElementsAre(0, 3, 3, 3, 3));
  EXPECT_NEAR(units[1].contribution, 0.2, 1e-12);  // biases of both blocks: two rules
  EXPECT_EQ(units[1].planned_bytes, 200);
  cb.planned_peak = [](const SparseUpdateSpec&) -> absl::StatusOr<int64_t> {
    return absl::UnimplementedError("channels are not built");
  };
  const absl::Status s = MeasureContributions(units, 3, cb);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("sparse budget unit \"biases of the last 1 block (b)\""));
  EXPECT_EQ(MeasureContributions(units, 0, cb).code(), absl::StatusCode::kInvalidArgument);
}

// A tiny GPT: contributions measured by training each unit on a repeating token pattern, the
// planned peaks by PlanTrainingStep.
class TinyGptBudget : public ::testing::Test {
 protected:
  static Tensor Tokens(int offset) {
    Tensor t = Tensor::Empty(Shape{2, 16}, DType::kI32, DefaultCpuAllocator()).value();
    for (int i = 0; i < 32; ++i) t.data<int32_t>()[i] = ((i + offset) * 7 + 3) % 64;
    return t;
  }
  static TrainOptions Options() {
    TrainOptions o;
    o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.0);
    o.schedule = {.kind = optim::LrSchedule::kConstant, .max_lr = 1e-2};
    o.seed = 5;
    return o;
  }
  static std::vector<InputSpec> Inputs() {
    return {{"ids", Shape{2, 16}, DType::kI32}, {"targets", Shape{2, 16}, DType::kI32}};
  }
  static absl::StatusOr<double> HeldOutLoss(const SparseUpdateSpec& spec, int64_t steps) {
    Gpt gpt(kTiny);
    STRATA_RETURN_IF_ERROR(ApplySparseUpdate(gpt, spec).status());
    STRATA_ASSIGN_OR_RETURN(
        std::unique_ptr<Program> p,
        Compile(gpt, Inputs(),
                [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                Options()));
    for (int64_t s = 0; s < steps; ++s) {
      STRATA_RETURN_IF_ERROR(p->Step({Tokens(0), Tokens(1)}).status());
    }
    return p->Evaluate({Tokens(5), Tokens(6)});
  }
};

TEST_F(TinyGptBudget, ChosenSpecFitsAndMoreBudgetNeverChoosesLess) {
  Gpt model(kTiny);
  SparseBudgetCallbacks cb;
  cb.held_out_loss = &HeldOutLoss;
  cb.planned_peak = PlannedPeakWith(
      model, Inputs(),
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(model.Forward(in[0]), in[1]); },
      Options());
  // Each block at all and half of its channels (the three transformer blocks only).
  std::vector<SparseBudgetUnit> units = SparseBudgetUnits(SparseBudgetBlocks(model), {1.0, 0.5});
  ASSERT_EQ(units.size(), 4u + 6u + 3u);
  ASSERT_TRUE(MeasureContributions(units, 4, cb).ok());
  int64_t smallest = INT64_MAX, largest = 0;
  for (const SparseBudgetUnit& u : units) {
    if (u.contribution > 0) smallest = std::min(smallest, u.planned_bytes);
    largest = std::max(largest, u.planned_bytes);
  }
  ASSERT_LT(smallest, INT64_MAX) << "no unit lowered the held-out loss";

  absl::StatusOr<SparseBudgetChoice> low = ChooseSparseUpdate(units, smallest - 1, cb.planned_peak);
  ASSERT_FALSE(low.ok());
  EXPECT_EQ(low.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(low.status().message(), HasSubstr(std::to_string(smallest) + " bytes"));

  double previous = 0;
  for (int i = 0; i <= 4; ++i) {
    const int64_t budget = smallest + (3 * largest - smallest) * i / 4;
    absl::StatusOr<SparseBudgetChoice> c = ChooseSparseUpdate(units, budget, cb.planned_peak);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_GE(c->contribution, previous) << "budget " << budget;
    previous = c->contribution;
    // Planned again, independently, on a model the analysis never touched.
    Gpt fresh(kTiny);
    ASSERT_TRUE(ApplySparseUpdate(fresh, c->spec).ok());
    absl::StatusOr<PlannedStep> step = PlanTrainingStep(
        fresh, Inputs(),
        [&](absl::Span<const Var> in) { return ops::CrossEntropy(fresh.Forward(in[0]), in[1]); },
        Options());
    ASSERT_TRUE(step.ok()) << step.status();
    const int64_t peak = ReportPlannedMemory(step->graph, step->plan, step->config)
                             .planned_peak[static_cast<int>(MemoryTier::kDevice)];
    EXPECT_EQ(peak, c->planned_peak);
    EXPECT_LE(peak, budget);
    EXPECT_THAT(c->Summary(), HasSubstr("sparse update rules: [{\"match\""));
  }
}

}  // namespace
}  // namespace strata::graph
