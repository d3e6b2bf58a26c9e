// Budget-driven sparse updates (PockEngine's contribution analysis): which parameters to train
// when the whole training step, weights included, must fit a memory budget.
//
//   std::vector<SparseBudgetUnit> units = SparseBudgetUnits(SparseBudgetBlocks(model), {1.0});
//   SparseBudgetCallbacks cb;
//   cb.held_out_loss = [&](const SparseUpdateSpec& spec, int64_t steps) { ... };  // see below
//   cb.planned_peak = PlannedPeakWith(model, inputs, loss, options);
//   STRATA_RETURN_IF_ERROR(MeasureContributions(units, /*batches=*/8, cb));
//   STRATA_ASSIGN_OR_RETURN(SparseBudgetChoice choice,
//                           ChooseSparseUpdate(units, int64_t{512} << 20, cb.planned_peak));
//   std::cout << choice.Summary();
//   ApplySparseUpdate(model, choice.spec);  // then Compile as with any spec
//
// The candidate units are "the biases of the last k blocks" (k = 1..L over the blocks that have
// biases) and "block i's parameters at channel ratio r" (rule `full` for r = 1, `channels:r`
// otherwise). A block is a recompute boundary (a GPT transformer block, a MobileNet inverted
// residual) or a top-level module outside them with parameters (wte, ln_f, stem, classifier).
// A unit's contribution is the held-out loss before minus after training only that unit for a
// few batches from the same starting weights; the choice maximises the summed contribution of
// one bias unit and at most one ratio per block under the budget (Note [sparse budget choice]
// in sparse_budget.cc). The library knows no data set: the caller measures.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "graph/compile.h"
#include "graph/module.h"
#include "graph/sparse_update.h"

namespace strata::graph {

struct SparseBudgetBlock {
  std::string path;   // "h.3", "ln_f", "classifier"
  std::string match;  // the glob over its parameters ("h.3.*")
  bool has_bias = false;  // a parameter below it is named *.bias
  // A weight below it trains part of its channels under channels:F (PartialChannelWeights).
  bool has_channels = false;
};

// The model's blocks in model order (the order ForEachModule visits them).
std::vector<SparseBudgetBlock> SparseBudgetBlocks(Module& model);

struct SparseBudgetUnit {
  enum Kind { kBiases, kWeights };
  Kind kind = kBiases;
  std::string name;  // "biases of the last 2 blocks", "h.3 full", "h.3 channels:0.5"
  std::vector<SparseUpdateRule> rules;
  int index = 0;       // kBiases: k, the number of last blocks; kWeights: the block's index
  double ratio = 1.0;  // kWeights
  // Filled by MeasureContributions.
  double contribution = 0;    // held-out loss before minus after
  int64_t planned_bytes = 0;  // planned peak of the step training this unit alone
};

// The bias units for k = 1..(blocks with biases), then each block's weight unit at each ratio
// (in (0, 1]; 1 gives the rule `full`, others `channels:r`, for the blocks with such weights).
std::vector<SparseBudgetUnit> SparseBudgetUnits(const std::vector<SparseBudgetBlock>& blocks,
                                                const std::vector<double>& ratios);

struct SparseBudgetCallbacks {
  // The held-out loss after training only what `spec` selects for `steps` steps (0: none) from
  // the starting weights, at the run's learning rate. Every call starts from the same weights.
  std::function<absl::StatusOr<double>(const SparseUpdateSpec& spec, int64_t steps)> held_out_loss;
  // The planned peak bytes of the whole training step (weights included) training `spec`.
  std::function<absl::StatusOr<int64_t>(const SparseUpdateSpec& spec)> planned_peak;
};

// Fills each unit's contribution (the held-out loss of the starting weights minus the loss after
// `batches` steps of that unit) and planned_bytes. Errors name the unit.
absl::Status MeasureContributions(std::vector<SparseBudgetUnit>& units, int64_t batches,
                                  const SparseBudgetCallbacks& callbacks);

struct SparseBudgetChoice {
  SparseUpdateSpec spec;
  int64_t budget = 0;
  int64_t planned_peak = 0;   // of the chosen spec, planned as one step
  double contribution = 0;    // summed over the chosen units
  std::vector<SparseBudgetUnit> units;  // every unit, as measured
  std::vector<bool> chosen;             // per unit
  // One line per unit (name, contribution, planned MiB, chosen or not), then the choice with
  // its planned peak and its rules as the JSON --sparse-update reads.
  std::string Summary() const;
};

// Chooses one bias unit (or none) and weight units (at most one ratio per block) with positive
// contributions, maximising the summed contribution while planned_peak(combined spec) <= budget.
// Errors: InvalidArgument naming the budget and the smallest budget that would work when nothing
// fits; FailedPrecondition when no unit lowered the held-out loss.
absl::StatusOr<SparseBudgetChoice> ChooseSparseUpdate(
    const std::vector<SparseBudgetUnit>& units, int64_t budget,
    const std::function<absl::StatusOr<int64_t>(const SparseUpdateSpec&)>& planned_peak);

// A planned_peak callback: applies the spec to `model` (its trainable flags stay as the last
// spec set them), plans the step with PlanTrainingStep and returns the device tier's planned
// peak. `model` must outlive the callback; `loss` traces `model`.
std::function<absl::StatusOr<int64_t>(const SparseUpdateSpec&)> PlannedPeakWith(
    Module& model, std::vector<InputSpec> inputs, LossFn loss, TrainOptions options);

// "0.25,0.5,1" -> {0.25, 0.5, 1}: distinct channel ratios in (0, 1]; errors name the entry.
absl::StatusOr<std::vector<double>> ParseChannelRatios(absl::string_view text);

// The rules as the JSON array --sparse-update reads.
std::string SparseUpdateJson(const SparseUpdateSpec& spec);

}  // namespace strata::graph
