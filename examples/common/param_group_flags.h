// --param-group: parameter groups (graph/param_groups.h) from the command line, shared by
// strata-gpt and strata-fmnist.
//
//   std::vector<std::string> texts;
//   AddParamGroupFlag(flags, &texts);   // --param-group '*.bias:weight_decay=0' (repeatable)
//   ...
//   STRATA_ASSIGN_OR_RETURN(options.optimizer.groups, ParseParamGroupFlags(texts));
//   config.AddWithUnrecorded("--param-group", ParamGroupsText(groups), "none");
//
// Syntax: PATTERN:SETTING[,SETTING], SETTING one of lr_scale=X (multiplies the schedule's lr,
// >= 0) and weight_decay=X (>= 0; replaces the default decay on every tensor the group takes).
// PATTERN is a glob over parameter paths (* ? [...], * crossing dots), split from the settings at
// the last ':'. Groups are tried in the order given; the first that matches a parameter takes it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "examples/common/flags.h"
#include "graph/param_groups.h"

namespace strata::examples {

void AddParamGroupFlag(Flags& flags, std::vector<std::string>* texts);

// One --param-group value. Errors are usage errors naming the flag, the value and the bad part.
absl::StatusOr<graph::ParamGroup> ParseParamGroupFlag(absl::string_view text);
// Every value, in order.
absl::StatusOr<std::vector<graph::ParamGroup>> ParseParamGroupFlags(
    const std::vector<std::string>& texts);

// The groups as a checkpoint's run configuration records them: "none", or each group's pattern
// and both settings (reals with 17 significant digits; "default" for an unset weight decay),
// separated by "; ".
std::string ParamGroupsText(const std::vector<graph::ParamGroup>& groups);

}  // namespace strata::examples
