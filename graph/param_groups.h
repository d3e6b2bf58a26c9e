// Parameter groups: a learning-rate scale and a weight decay per group of parameters, chosen by
// path pattern — PyTorch's optimizer param_groups, with the schedule still giving each step's lr.
//
//   TrainOptions o;
//   o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, /*weight_decay=*/0.1);
//   o.optimizer.groups = {{.match = "*.bias", .weight_decay = 0.0},
//                         {.match = "wte.*", .lr_scale = 0.1},
//                         {.match = "h.0.*", .lr_scale = 0}};  // first match wins: not h.0's biases
//   STRATA_ASSIGN_OR_RETURN(ParamGroupPlan plan, ResolveParamGroups(model, o.optimizer));
//   std::cout << plan.Summary();                               // what each group took
//   Compile(model, inputs, loss, o);                           // resolves the same way
//
// Note [parameter groups]
// A group's `match` is a glob over parameter paths, as --sparse-update's: `*` (which also crosses
// dots: "h.*.ln_1.*"), `?` and `[...]` (fnmatch(3) without flags). Groups are tried in order and
// the first whose pattern matches a parameter's path takes it. A parameter in a group is updated
// with lr = schedule(step) * lr_scale and the group's weight decay when it sets one (on every
// tensor it takes, whatever OptimizerOptions::decays says); a group that sets no weight decay,
// and every parameter no group takes, keeps the defaults: OptimizerOptions::weight_decay where
// `decays` holds, else 0, and lr_scale 1 — so no groups is exactly the step without groups.
// lr_scale 0 leaves a parameter unchanged (AdamW's decoupled decay is scaled by the lr too) while
// its optimizer state still follows its gradient, as PyTorch does with lr 0.
// A group that takes no parameter is an error naming its pattern: one that matches none (a typo
// must not silently train the model another way) and one whose every match an earlier group
// took (the order is wrong). Matching is over all of the model's parameters, frozen ones
// included, so that the same groups hold whatever a sparse update trains.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/module.h"

namespace strata::graph {

struct OptimizerOptions;

struct ParamGroup {
  std::string match;                   // a glob over parameter paths (Note [parameter groups])
  double lr_scale = 1.0;               // multiplies the schedule's lr; >= 0
  std::optional<double> weight_decay = std::nullopt;  // >= 0; unset: the default rule
};

// Checks a group's fields; errors name the group by position (from 1) and pattern, and the field.
absl::Status ValidateParamGroup(const ParamGroup& group, int index);

// Whether `path` matches the glob `pattern` (Note [parameter groups]).
bool PathMatches(const std::string& pattern, const std::string& path);

// What the groups of an OptimizerOptions make of a model's parameters.
struct ParamGroupPlan {
  // What one group took of the trainable parameters (frozen ones are counted apart).
  struct Group {
    ParamGroup group;
    int64_t tensors = 0, numel = 0;
    int64_t decayed_tensors = 0;  // of `tensors`, those with a weight decay above 0
    int64_t frozen_tensors = 0;   // matched but not trained (a sparse update froze them)
  };
  // How one trainable parameter is updated.
  struct Param {
    std::string path;
    int group = -1;  // index into groups; -1: no group took it (the defaults)
    double lr_scale = 1.0, weight_decay = 0.0;
  };
  std::vector<Group> groups;  // as given, in order
  Group rest;                 // the trainable parameters no group took; rest.group is unused
  double default_weight_decay = 0;
  std::vector<Param> params;  // every trainable parameter, in model order

  // One line per group and one for the rest, e.g.
  //   "parameter groups (first match wins):\n  *.bias -> 26 tensors, 9984 elements: lr x1,
  //   weight decay 0\n  ...\n  (no group) -> 50 tensors, ...: lr x1, weight decay 0.1 on 24 of
  //   them (the default)\n"; "" when there are no groups.
  std::string Summary() const;
};

// Resolves `options.groups` over `model`'s parameters (Note [parameter groups]). Errors: a field
// out of range (ValidateParamGroup), a group that takes no parameter (naming its pattern).
absl::StatusOr<ParamGroupPlan> ResolveParamGroups(Module& model, const OptimizerOptions& options);

}  // namespace strata::graph
