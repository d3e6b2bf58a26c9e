#include "graph/sparse_update.h"

#include <fnmatch.h>

#include <cerrno>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "graph/nn/layers.h"
#include "nlohmann/json.hpp"
#include "runtime/errno_text.h"
#include "runtime/status.h"

namespace strata::graph {
namespace {

// Note [sparse update rules]
// Rules are applied in order over every parameter's path; a later match overrides an earlier
// one, and a parameter no rule matches is frozen:
//   frozen      the parameter is not trained;
//   full        it is;
//   bias_only   the matched parameters named *.bias are trained (norm biases included), the
//               others frozen;
//   channels:F  the first ceil(F * C_in) input channels of a weight (PockEngine's partial
//               update); not built yet: refused with a message that says so.
// Then a layer whose weight is trained trains its bias too (PockEngine, tiny-training): the
// bias's gradient is the cheapest part of that layer's backward. A BatchNorm whose weight does
// not train runs in its frozen mode (the running statistics normalize, nothing updates them), as
// PockEngine fine-tunes: a batch's statistics would move a pretrained model's normalization, and
// their gradient would pull the backward through every BatchNorm.
struct Rule {
  SparseUpdateKind kind;
  double fraction = 1.0;  // kChannels
};

absl::StatusOr<Rule> ParseRule(const std::string& text, const std::string& where) {
  if (text == "frozen") return Rule{SparseUpdateKind::kFrozen};
  if (text == "full") return Rule{SparseUpdateKind::kFull};
  if (text == "bias_only") return Rule{SparseUpdateKind::kBiasOnly};
  if (absl::StartsWith(text, "channels:")) {
    double f = 0;
    if (!absl::SimpleAtod(text.substr(9), &f) || !std::isfinite(f) || f <= 0 || f > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": \"", text, "\": the fraction of input channels must be a number in (0, 1]"));
    }
    return Rule{SparseUpdateKind::kChannels, f};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where, ": unknown update rule \"", text,
      "\" (expected frozen, bias_only, full or channels:F with 0 < F <= 1)"));
}

bool Matches(const std::string& pattern, const std::string& path) {
  return fnmatch(pattern.c_str(), path.c_str(), 0) == 0;
}

}  // namespace

absl::StatusOr<SparseUpdateSpec> ParseSparseUpdateJson(absl::string_view text,
                                                       absl::string_view source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not valid JSON (", e.what(), ")"));
  }
  if (!j.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": expected a JSON array of {\"match\": \"<glob>\", \"update\": \"<rule>\"}, got ",
        j.type_name()));
  }
  SparseUpdateSpec spec;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = absl::StrCat(source, " entry ", i);
    const nlohmann::json& e = j[i];
    if (!e.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected an object with \"match\" and \"update\", got ", e.type_name()));
    }
    for (const auto& [key, value] : e.items()) {
      if (key != "match" && key != "update") {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": unknown field \"", key, "\" (an entry has \"match\" and \"update\")"));
      }
      if (!value.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": \"", key, "\" must be a string, got ", value.type_name()));
      }
    }
    for (const char* key : {"match", "update"}) {
      if (!e.contains(key)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": missing \"", key, "\""));
      }
    }
    SparseUpdateRule rule{e["match"].get<std::string>(), e["update"].get<std::string>()};
    if (rule.match.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": \"match\" is empty"));
    }
    STRATA_RETURN_IF_ERROR(ParseRule(rule.update, where).status());
    spec.rules.push_back(std::move(rule));
  }
  if (spec.rules.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no rules: every parameter would be frozen"));
  }
  return spec;
}

absl::StatusOr<SparseUpdateSpec> ReadSparseUpdateFile(const std::string& path) {
  // An ifstream opens a directory and reads nothing, which would look like empty JSON.
  if (std::error_code ec; std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--sparse-update ", path, ": is a directory, not a JSON file of rules"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("--sparse-update ", path, ": cannot open (", ErrnoText(errno), ")"));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(
        absl::StrCat("--sparse-update ", path, ": read failed (", ErrnoText(errno), ")"));
  }
  return ParseSparseUpdateJson(text.str(), path);
}

absl::StatusOr<SparseUpdatePlan> ApplySparseUpdate(Module& model, const SparseUpdateSpec& spec) {
  SparseUpdatePlan plan;
  std::vector<Parameter*> params;
  std::map<std::string, size_t> index;  // path -> entry
  model.ForEachParameter([&](const std::string& path, Parameter& p) {
    if (p.is_buffer()) return;
    index[path] = plan.params.size();
    plan.params.push_back({path, SparseUpdateKind::kFrozen, p.shape().numel()});
    params.push_back(&p);
  });
  for (size_t r = 0; r < spec.rules.size(); ++r) {
    const SparseUpdateRule& rule = spec.rules[r];
    const std::string where = absl::StrCat("sparse update rule ", r, " (\"", rule.match, "\": \"",
                                           rule.update, "\")");
    STRATA_ASSIGN_OR_RETURN(const Rule parsed, ParseRule(rule.update, where));
    int matched = 0;
    for (SparseUpdatePlan::Entry& e : plan.params) {
      if (!Matches(rule.match, e.path)) continue;
      ++matched;
      switch (parsed.kind) {
        case SparseUpdateKind::kBiasOnly:
          e.kind = absl::EndsWith(e.path, ".bias") ? SparseUpdateKind::kFull
                                                   : SparseUpdateKind::kFrozen;
          break;
        case SparseUpdateKind::kChannels:
          return absl::UnimplementedError(absl::StrCat(
              where, " matches ", e.path,
              ": updating only part of a weight's input channels is not supported by this "
              "build; train the weight (full) or freeze it"));
        default: e.kind = parsed.kind;
      }
    }
    if (matched == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the pattern matches no parameter of the model"));
    }
  }
  // A trained weight trains its layer's bias.
  for (const SparseUpdatePlan::Entry& e : plan.params) {
    if (e.kind != SparseUpdateKind::kFull || !absl::EndsWith(e.path, ".weight")) continue;
    const std::string bias = absl::StrCat(e.path.substr(0, e.path.size() - 6), "bias");
    if (auto it = index.find(bias); it != index.end()) {
      plan.params[it->second].kind = SparseUpdateKind::kFull;
    }
  }
  for (size_t i = 0; i < plan.params.size(); ++i) {
    const bool trained = plan.params[i].kind == SparseUpdateKind::kFull;
    plan.total_numel += plan.params[i].numel;
    if (trained) plan.trainable_numel += plan.params[i].numel;
  }
  if (plan.trainable_numel == 0) {
    return absl::InvalidArgumentError(
        "sparse update: the rules train no parameter (every one is frozen)");
  }
  for (size_t i = 0; i < plan.params.size(); ++i) {
    params[i]->set_trainable(plan.params[i].kind == SparseUpdateKind::kFull);
  }
  // A BatchNorm normalizes with its running statistics unless its weight trains.
  model.ForEachModule([&](const std::string& path, Module& m) {
    auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m);
    if (bn == nullptr) return;
    const auto it = index.find(path.empty() ? "weight" : absl::StrCat(path, ".weight"));
    const bool trains = it != index.end() && plan.params[it->second].kind == SparseUpdateKind::kFull;
    bn->SetFrozen(!trains);
    ++(trains ? plan.batchnorms_training : plan.batchnorms_frozen);
  });
  return plan;
}

std::string SparseUpdatePlan::Summary() const {
  int trained = 0;
  std::string list;
  for (const Entry& e : params) {
    if (e.kind != SparseUpdateKind::kFull) continue;
    ++trained;
    if (trained <= 12) absl::StrAppend(&list, trained > 1 ? ", " : "", e.path);
  }
  if (trained > 12) absl::StrAppend(&list, ", ... (", trained - 12, " more)");
  std::string bn;
  if (batchnorms_frozen > 0) {
    bn = absl::StrCat("; ", batchnorms_frozen, " of ", batchnorms_frozen + batchnorms_training,
                      " BatchNorms normalize with their running statistics");
  }
  return absl::StrFormat("sparse update: %d of %d tensors trained (%.4gM of %.4gM parameters)%s: %s",
                         trained, static_cast<int>(params.size()), trainable_numel / 1e6,
                         total_numel / 1e6, bn, list);
}

}  // namespace strata::graph
