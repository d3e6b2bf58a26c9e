#include "graph/sparse_budget.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "runtime/status.h"

namespace strata::graph {
namespace {

// Note [sparse budget choice]
// PockEngine sums contributions: the loss improvement of a combination is taken to be the sum
// of its units' improvements (each measured alone), so the choice is a knapsack whose weights
// are not additive: the planned peak of a combination is computed for the combination (two
// units' activations and gradients may or may not be live at once). An exact search plans
// every combination, (R + 1)^L * L of them; instead:
//   1. weight units with positive contribution are ordered once by contribution per planned
//      byte beyond the cheapest unit (its planned peak alone minus the smallest one, at least 1);
//   2. for each bias choice k (none, or a bias unit with positive contribution), the order's
//      prefixes are planned as one spec each (a block already taken at another ratio is passed
//      over), until the first that exceeds the budget;
//   3. the feasible candidate with the largest summed contribution wins (ties: smaller peak).
// The candidates do not depend on the budget, only which of them are reached, and a larger
// budget reaches at least the same prefixes, so a larger budget never chooses a smaller total.
// Stopping at the first prefix over the budget keeps the planning to at most (L + 1) * (U + 1)
// plans. The greedy is optimal when memory is additive and the weight units cost the same (the
// best m units are then the first m of the order); it can miss a skip-ahead combination
// otherwise, which the feasible plan still bounds.

constexpr double kMiB = 1 << 20;

std::string SpecKey(const SparseUpdateSpec& spec) {
  std::string key;
  for (const SparseUpdateRule& r : spec.rules) absl::StrAppend(&key, r.match, "\n", r.update, "\n");
  return key;
}

}  // namespace

std::vector<SparseBudgetBlock> SparseBudgetBlocks(Module& model) {
  std::vector<std::string> boundaries;
  model.ForEachModule([&](const std::string& path, Module& m) {
    auto* layer = dynamic_cast<Layer*>(&m);
    if (layer == nullptr || !layer->recompute_boundary() || path.empty()) return;
    for (const std::string& b : boundaries) {
      if (absl::StartsWith(path, b + ".")) return;  // inside a block already
    }
    boundaries.push_back(path);
  });
  auto contains_boundary = [&](const std::string& prefix) {
    return std::any_of(boundaries.begin(), boundaries.end(),
                       [&](const std::string& b) { return absl::StartsWith(b, prefix + "."); });
  };
  std::vector<SparseBudgetBlock> blocks;
  std::map<std::string, size_t> index;
  const std::map<std::string, int64_t> channelled = PartialChannelWeights(model);
  model.ForEachParameter([&](const std::string& path, Parameter& p) {
    if (p.is_buffer()) return;
    std::string block, match;
    for (const std::string& b : boundaries) {
      if (absl::StartsWith(path, b + ".")) block = b;
    }
    if (block.empty()) {
      const size_t dot = path.find('.');
      const std::string top = path.substr(0, dot);
      // A top-level module holding blocks is not one; its own parameters are blocks of one.
      block = dot == std::string::npos || contains_boundary(top) ? path : top;
    }
    match = block == path ? path : block + ".*";
    auto [it, added] = index.emplace(block, blocks.size());
    if (added) blocks.push_back({block, match, false});
    if (absl::EndsWith(path, ".bias") || path == "bias") blocks[it->second].has_bias = true;
    if (auto c = channelled.find(path); c != channelled.end() && c->second > 1) {
      blocks[it->second].has_channels = true;
    }
  });
  return blocks;
}

std::vector<SparseBudgetUnit> SparseBudgetUnits(const std::vector<SparseBudgetBlock>& blocks,
                                                const std::vector<double>& ratios) {
  std::vector<SparseBudgetUnit> units;
  std::vector<SparseUpdateRule> bias_rules;
  int k = 0;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) {
    if (!b->has_bias) continue;
    ++k;
    bias_rules.insert(bias_rules.begin(), {b->match, "bias_only"});
    SparseBudgetUnit u;
    u.kind = SparseBudgetUnit::kBiases;
    u.index = k;
    u.name = absl::StrCat("biases of the last ", k, k == 1 ? " block (" : " blocks (from ",
                          b->path, ")");
    u.rules = bias_rules;
    units.push_back(std::move(u));
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    for (double r : ratios) {
      if (r < 1.0 && !blocks[i].has_channels) continue;  // channels:r would train it whole
      SparseBudgetUnit u;
      u.kind = SparseBudgetUnit::kWeights;
      u.index = static_cast<int>(i);
      u.ratio = r;
      const std::string rule = r == 1.0 ? "full" : absl::StrCat("channels:", r);
      u.name = absl::StrCat(blocks[i].path, " ", rule);
      u.rules = {{blocks[i].match, rule}};
      units.push_back(std::move(u));
    }
  }
  return units;
}

absl::Status MeasureContributions(std::vector<SparseBudgetUnit>& units, int64_t batches,
                                  const SparseBudgetCallbacks& callbacks) {
  if (batches < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse budget: ", batches, " batches measure nothing; give at least 1"));
  }
  if (units.empty()) return absl::InvalidArgumentError("sparse budget: no candidate unit");
  // Every spec starts from the same weights, so any of them gives the starting loss.
  STRATA_ASSIGN_OR_RETURN(const double before,
                          callbacks.held_out_loss(SparseUpdateSpec{units[0].rules}, 0));
  for (SparseBudgetUnit& u : units) {
    const SparseUpdateSpec spec{u.rules};
    absl::StatusOr<double> after = callbacks.held_out_loss(spec, batches);
    absl::StatusOr<int64_t> bytes =
        after.ok() ? callbacks.planned_peak(spec) : absl::StatusOr<int64_t>(after.status());
    if (!bytes.ok()) {
      return absl::Status(bytes.status().code(), absl::StrCat("sparse budget unit \"", u.name,
                                                              "\": ", bytes.status().message()));
    }
    u.contribution = before - *after;
    u.planned_bytes = *bytes;
  }
  return absl::OkStatus();
}

absl::StatusOr<SparseBudgetChoice> ChooseSparseUpdate(
    const std::vector<SparseBudgetUnit>& units, int64_t budget,
    const std::function<absl::StatusOr<int64_t>(const SparseUpdateSpec&)>& planned_peak) {
  // Step 1 of Note [sparse budget choice].
  std::vector<size_t> bias_choices = {units.size()};  // units.size(): no bias unit
  std::vector<size_t> order;
  int64_t cheapest = INT64_MAX;
  for (size_t i = 0; i < units.size(); ++i) {
    if (units[i].contribution <= 0) continue;
    cheapest = std::min(cheapest, units[i].planned_bytes);
    (units[i].kind == SparseBudgetUnit::kBiases ? bias_choices : order).push_back(i);
  }
  if (bias_choices.size() == 1 && order.empty()) {
    return absl::FailedPreconditionError(
        "sparse budget: no unit lowered the held-out loss (every contribution is <= 0); "
        "try another learning rate or more analysis batches");
  }
  auto density = [&](size_t i) {
    return units[i].contribution /
           static_cast<double>(std::max<int64_t>(1, units[i].planned_bytes - cheapest + 1));
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return density(a) > density(b); });

  std::map<std::string, int64_t> planned;  // memo: a prefix recurs for every bias choice
  auto peak_of = [&](const SparseUpdateSpec& spec) -> absl::StatusOr<int64_t> {
    const std::string key = SpecKey(spec);
    if (auto it = planned.find(key); it != planned.end()) return it->second;
    absl::StatusOr<int64_t> p = planned_peak(spec);
    if (!p.ok()) {
      return absl::Status(p.status().code(), absl::StrCat("sparse budget: planning ",
                                                          SparseUpdateJson(spec), ": ",
                                                          p.status().message()));
    }
    planned[key] = *p;
    return *p;
  };

  SparseBudgetChoice best;
  best.budget = budget;
  best.units = units;
  bool found = false;
  int64_t smallest = INT64_MAX;  // the smallest planned candidate, for the error
  for (size_t bias : bias_choices) {
    std::vector<bool> chosen(units.size(), false);
    SparseUpdateSpec spec;
    double total = 0;
    if (bias < units.size()) {
      spec.rules = units[bias].rules;
      total = units[bias].contribution;
      chosen[bias] = true;
    }
    std::vector<bool> block_taken;
    for (size_t m = 0; m <= order.size(); ++m) {
      if (m > 0) {
        const SparseBudgetUnit& u = units[order[m - 1]];
        if (u.index >= static_cast<int>(block_taken.size())) block_taken.resize(u.index + 1);
        if (block_taken[u.index]) continue;
        block_taken[u.index] = true;
        spec.rules.insert(spec.rules.end(), u.rules.begin(), u.rules.end());
        total += u.contribution;
        chosen[order[m - 1]] = true;
      }
      if (spec.rules.empty()) continue;
      STRATA_ASSIGN_OR_RETURN(const int64_t peak, peak_of(spec));
      smallest = std::min(smallest, peak);
      if (peak > budget) break;
      if (!found || total > best.contribution ||
          (total == best.contribution && peak < best.planned_peak)) {
        found = true;
        best.spec = spec;
        best.planned_peak = peak;
        best.contribution = total;
        best.chosen = chosen;
      }
    }
  }
  if (!found) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "sparse budget %d bytes (%.1f MiB) is below the smallest choice, which plans %d bytes "
        "(%.1f MiB): give at least that",
        budget, budget / kMiB, smallest, smallest / kMiB));
  }
  return best;
}

std::string SparseBudgetChoice::Summary() const {
  std::string out = absl::StrFormat("%-44s %13s %12s  %s\n", "sparse budget unit", "contribution",
                                    "planned MiB", "chosen");
  std::vector<std::string> names;
  for (size_t i = 0; i < units.size(); ++i) {
    const bool c = i < chosen.size() && chosen[i];
    absl::StrAppendFormat(&out, "%-44s %13.5f %12.1f  %s\n", units[i].name, units[i].contribution,
                          units[i].planned_bytes / kMiB, c ? "yes" : "");
    if (c) names.push_back(units[i].name);
  }
  absl::StrAppendFormat(&out,
                        "sparse budget %.1f MiB: chose %s; planned peak %.1f MiB, summed "
                        "contribution %.5f\nsparse update rules: %s\n",
                        budget / kMiB, absl::StrJoin(names, " + "), planned_peak / kMiB,
                        contribution, SparseUpdateJson(spec));
  return out;
}

std::function<absl::StatusOr<int64_t>(const SparseUpdateSpec&)> PlannedPeakWith(
    Module& model, std::vector<InputSpec> inputs, LossFn loss, TrainOptions options) {
  options.dump_graph = false;
  return [&model, inputs = std::move(inputs), loss = std::move(loss),
          options = std::move(options)](const SparseUpdateSpec& spec) -> absl::StatusOr<int64_t> {
    STRATA_RETURN_IF_ERROR(ApplySparseUpdate(model, spec).status());
    STRATA_ASSIGN_OR_RETURN(const PlannedStep step,
                            PlanTrainingStep(model, inputs, loss, options));
    const MemoryReport report = ReportPlannedMemory(step.graph, step.plan, step.config);
    return report.planned_peak[static_cast<int>(MemoryTier::kDevice)];
  };
}

absl::StatusOr<std::vector<double>> ParseChannelRatios(absl::string_view text) {
  std::vector<double> ratios;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double r = 0;
    if (!absl::SimpleAtod(part, &r) || !std::isfinite(r) || r <= 0 || r > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "channel ratio \"", part, "\" in \"", text, "\" must be a number in (0, 1]"));
    }
    if (std::find(ratios.begin(), ratios.end(), r) != ratios.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("channel ratio ", r, " appears twice in \"", text, "\""));
    }
    ratios.push_back(r);
  }
  return ratios;
}

std::string SparseUpdateJson(const SparseUpdateSpec& spec) {
  nlohmann::json j = nlohmann::json::array();
  for (const SparseUpdateRule& r : spec.rules) j.push_back({{"match", r.match}, {"update", r.update}});
  return j.dump();
}

}  // namespace strata::graph
