#include "examples/common/param_group_flags.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace strata::examples {
namespace {

constexpr char kSyntax[] =
    "PATTERN:lr_scale=X,weight_decay=Y with at least one of the two settings";

std::string Exact(double v) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.17g", v);
  return text;
}

}  // namespace

void AddParamGroupFlag(Flags& flags, std::vector<std::string>* texts) {
  flags.AddRepeated(
      "param-group", texts,
      "a parameter group, PATTERN:lr_scale=X,weight_decay=Y (either setting may be left out): "
      "the parameters whose path matches the glob PATTERN (* ? [...]; * crosses dots, e.g. "
      "'*.bias', 'h.*.ln_*') train with lr x X and weight decay Y instead of the defaults; "
      "groups are tried in order, the first match taking a parameter, and a pattern that "
      "matches nothing is an error");
}

absl::StatusOr<graph::ParamGroup> ParseParamGroupFlag(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return UsageError(absl::StrCat("--param-group '", text, "': ", why));
  };
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return bad(absl::StrCat("expected ", kSyntax, " (no ':' after the pattern)"));
  }
  graph::ParamGroup group;
  group.match = std::string(text.substr(0, colon));
  if (group.match.empty()) return bad("the pattern before ':' is empty");
  const absl::string_view settings = text.substr(colon + 1);
  if (settings.empty()) return bad(absl::StrCat("no setting after ':' (expected ", kSyntax, ")"));
  bool lr_given = false, wd_given = false;
  for (absl::string_view setting : absl::StrSplit(settings, ',')) {
    const size_t eq = setting.find('=');
    if (eq == absl::string_view::npos) {
      return bad(absl::StrCat("setting '", setting, "' is not NAME=VALUE (lr_scale or weight_decay)"));
    }
    const absl::string_view name = setting.substr(0, eq);
    const std::string value(setting.substr(eq + 1));
    bool* given = name == "lr_scale" ? &lr_given : name == "weight_decay" ? &wd_given : nullptr;
    if (given == nullptr) {
      return bad(absl::StrCat("unknown setting '", name, "' (expected lr_scale or weight_decay)"));
    }
    if (*given) return bad(absl::StrCat(name, " is given twice"));
    *given = true;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || errno == ERANGE) {
      return bad(absl::StrCat(name, " expects a number, got '", value, "'"));
    }
    if (!std::isfinite(v) || v < 0) {
      return bad(absl::StrCat(name, " = ", value, " must be a finite number >= 0"));
    }
    if (name == "lr_scale") {
      group.lr_scale = v;
    } else {
      group.weight_decay = v;
    }
  }
  return group;
}

absl::StatusOr<std::vector<graph::ParamGroup>> ParseParamGroupFlags(
    const std::vector<std::string>& texts) {
  std::vector<graph::ParamGroup> groups;
  for (const std::string& text : texts) {
    absl::StatusOr<graph::ParamGroup> group = ParseParamGroupFlag(text);
    if (!group.ok()) return group.status();
    groups.push_back(*std::move(group));
  }
  return groups;
}

std::string ParamGroupsText(const std::vector<graph::ParamGroup>& groups) {
  if (groups.empty()) return "none";
  std::string s;
  for (const graph::ParamGroup& g : groups) {
    absl::StrAppend(&s, s.empty() ? "" : "; ", g.match, ":lr_scale=", Exact(g.lr_scale),
                    ",weight_decay=",
                    g.weight_decay.has_value() ? Exact(*g.weight_decay) : std::string("default"));
  }
  return s;
}

}  // namespace strata::examples
