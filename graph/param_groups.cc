#include "graph/param_groups.h"

#include <fnmatch.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "graph/compile.h"
#include "runtime/status.h"

namespace strata::graph {
namespace {

std::string Name(const ParamGroup& g, int index) {
  return absl::StrCat("group ", index, " ('", g.match, "')");
}

// "lr x0.1, weight decay 0"; for a group without its own weight decay, how many of its tensors
// the default rule decays.
std::string Settings(const ParamGroupPlan::Group& g, double default_weight_decay) {
  std::string wd = g.group.weight_decay.has_value()
                       ? absl::StrCat(*g.group.weight_decay)
                       : absl::StrCat(default_weight_decay, " on ", g.decayed_tensors, " of them (the default)");
  return absl::StrCat("lr x", g.group.lr_scale, ", weight decay ", wd);
}

}  // namespace

absl::Status ValidateParamGroup(const ParamGroup& g, int index) {
  if (g.match.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer: group ", index, ": the path pattern is empty"));
  }
  if (!(g.lr_scale >= 0) || std::isinf(g.lr_scale)) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer: ", Name(g, index), ": lr_scale = ",
                                                   g.lr_scale, " must be finite and >= 0"));
  }
  if (g.weight_decay.has_value() && (!(*g.weight_decay >= 0) || std::isinf(*g.weight_decay))) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer: ", Name(g, index),
                                                   ": weight_decay = ", *g.weight_decay,
                                                   " must be finite and >= 0"));
  }
  return absl::OkStatus();
}

bool PathMatches(const std::string& pattern, const std::string& path) {
  return fnmatch(pattern.c_str(), path.c_str(), 0) == 0;
}

absl::StatusOr<ParamGroupPlan> ResolveParamGroups(Module& model, const OptimizerOptions& o) {
  for (size_t i = 0; i < o.groups.size(); ++i) {
    STRATA_RETURN_IF_ERROR(ValidateParamGroup(o.groups[i], static_cast<int>(i) + 1));
  }
  ParamGroupPlan plan;
  plan.default_weight_decay = o.weight_decay;
  for (const ParamGroup& g : o.groups) plan.groups.push_back({.group = g});
  // matched[i]: parameters group i's pattern matches, taken or not (to say why a group is empty).
  std::vector<int64_t> matched(o.groups.size(), 0);
  model.ForEachParameter([&](const std::string& path, Parameter& p) {
    if (p.is_buffer()) return;
    int group = -1;
    for (size_t i = 0; i < o.groups.size(); ++i) {
      if (!PathMatches(o.groups[i].match, path)) continue;
      ++matched[i];
      if (group < 0) group = static_cast<int>(i);
    }
    ParamGroupPlan::Group& into = group >= 0 ? plan.groups[group] : plan.rest;
    if (!p.trainable()) {
      ++into.frozen_tensors;
      return;
    }
    ParamGroupPlan::Param& param = plan.params.emplace_back();
    param.path = path;
    param.group = group;
    const bool own = group >= 0 && o.groups[group].weight_decay.has_value();
    param.weight_decay = own ? *o.groups[group].weight_decay
                             : (o.decays(path, p.shape()) ? o.weight_decay : 0.0);
    param.lr_scale = group >= 0 ? o.groups[group].lr_scale : 1.0;
    ++into.tensors;
    into.numel += p.shape().numel();
    if (param.weight_decay > 0) ++into.decayed_tensors;
  });
  for (size_t i = 0; i < o.groups.size(); ++i) {
    const ParamGroupPlan::Group& g = plan.groups[i];
    if (g.tensors + g.frozen_tensors > 0) continue;
    const std::string name = Name(g.group, static_cast<int>(i) + 1);
    if (matched[i] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "optimizer: ", name, " matches no parameter of the model (a glob over paths such as "
          "h.0.attn.c_attn.weight: * ? [...])"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "optimizer: ", name, " takes no parameter: earlier groups take all ", matched[i],
        " it matches (the first group that matches a parameter takes it; put it earlier)"));
  }
  return plan;
}

std::string ParamGroupPlan::Summary() const {
  if (groups.empty()) return "";
  std::string s = "parameter groups (first match wins):\n";
  auto line = [&](const std::string& name, const Group& g, const std::string& settings) {
    absl::StrAppend(&s, "  ", name, " -> ", g.tensors, " tensors, ", g.numel, " elements",
                    g.frozen_tensors > 0 ? absl::StrCat(" (", g.frozen_tensors, " more frozen)") : "",
                    ": ", settings, "\n");
  };
  for (const Group& g : groups) line(g.group.match, g, Settings(g, default_weight_decay));
  line("(no group)", rest,
       absl::StrCat("lr x1, weight decay ", default_weight_decay, " on ", rest.decayed_tensors,
                    " of them (the default)"));
  return s;
}

}  // namespace strata::graph
