#include "examples/common/sparse_budget_run.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace strata::examples {

void AddSparseBudgetAnalysisFlags(Flags& flags, int64_t* batches, std::string* ratios) {
  flags.Add("sparse-budget-batches", batches, {.min = 1, .max = 1 << 20},
            "training steps per unit in the --sparse-budget analysis");
  flags.Add("sparse-budget-ratios", ratios,
            "the channel ratios each block's weights are tried at in the --sparse-budget analysis "
            "(1: all of them, `full`; 0.25: channels:0.25), comma-separated");
}

absl::StatusOr<graph::SparseUpdateSpec> RunSparseBudget(
    std::vector<graph::SparseBudgetUnit> units, const graph::SparseBudgetCallbacks& callbacks,
    const SparseBudgetRun& run) {
  std::printf("sparse budget %s: measuring %zu units, %lld steps each at lr %g, %s\n",
              BytesText(run.budget).c_str(), units.size(), static_cast<long long>(run.batches),
              run.lr, run.held_out.c_str());
  std::fflush(stdout);
  auto wrap = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat("--sparse-budget ", BytesText(run.budget), ": ",
                                               s.message()));
  };
  if (absl::Status s = graph::MeasureContributions(units, run.batches, callbacks); !s.ok()) {
    return wrap(s);
  }
  absl::StatusOr<graph::SparseBudgetChoice> choice =
      graph::ChooseSparseUpdate(units, run.budget, callbacks.planned_peak);
  if (!choice.ok()) return wrap(choice.status());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
  std::printf("%ssparse budget analysis: %.1f s\n", choice->Summary().c_str(), seconds);
  std::fflush(stdout);
  return choice->spec;
}

}  // namespace strata::examples
