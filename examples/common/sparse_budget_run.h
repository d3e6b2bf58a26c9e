// What strata-gpt and strata-fmnist share about --sparse-budget: running the contribution
// analysis of graph/sparse_budget.h over their units, with their own measurements, and printing
// it before they train:
//
//   STRATA_ASSIGN_OR_RETURN(
//       graph::SparseUpdateSpec spec,
//       RunSparseBudget(units, callbacks, {.budget = int64_t{512} << 20, .batches = 8,
//                                          .lr = 3e-4, .held_out = "on the test images"}));
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "examples/common/flags.h"
#include "graph/sparse_budget.h"

namespace strata::examples {

struct SparseBudgetRun {
  int64_t budget = 0;   // --sparse-budget
  int64_t batches = 8;  // --sparse-budget-batches
  double lr = 0;        // the constant learning rate each unit trains at
  std::string held_out;  // what it measures on, for the first line ("on 4 held-out batches")
  // When the analysis began (its setup included), for the time it reports.
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

// --sparse-budget-batches and --sparse-budget-ratios, which both programs take alike.
void AddSparseBudgetAnalysisFlags(Flags& flags, int64_t* batches, std::string* ratios);

// Measures `units`, chooses under run.budget, prints the table, the choice and the analysis time
// on stdout, and returns the chosen spec; errors are prefixed with "--sparse-budget SIZE: ".
absl::StatusOr<graph::SparseUpdateSpec> RunSparseBudget(
    std::vector<graph::SparseBudgetUnit> units, const graph::SparseBudgetCallbacks& callbacks,
    const SparseBudgetRun& run);

}  // namespace strata::examples
