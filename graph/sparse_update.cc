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
//   channels:F  the first ceil(F * C_in) input channels of the weight of a linear layer or
//               a convolution (PockEngine's sparse tensor update); a depthwise convolution's
//               weight, whose input channel is its output channel, its own first ceil(F * C).
//               Only those channels of the layer's input are kept for the backward (Note
//               [partial channels] in graph/ops/channel_ops.cc). A parameter with no input
//               channels (a bias, a norm's scale) trains whole; so does a weight when ceil(F *
//               C_in) is all of them. Any other weight (an embedding) is refused by name.
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

std::map<std::string, int64_t> PartialChannelWeights(Module& model) {
  std::map<std::string, int64_t> out;
  model.ForEachModule([&](const std::string& path, Module& m) {
    const std::string weight = path.empty() ? "weight" : absl::StrCat(path, ".weight");
    if (auto* linear = dynamic_cast<nn::Linear*>(&m)) {
      out[weight] = linear->weight()->shape()[1];
    } else if (auto* conv = dynamic_cast<nn::Conv2d*>(&m)) {
      const Shape& w = conv->weight()->shape();
      const int groups = conv->params().groups;
      out[weight] = groups == 1 ? w[1] : groups == w[0] && w[1] == 1 ? w[0] : -1;
    }
  });
  return out;
}

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
  const std::map<std::string, int64_t> channelled = PartialChannelWeights(model);
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
          e.channels = e.of_channels = 0;
          break;
        case SparseUpdateKind::kChannels: {
          if (params[&e - plan.params.data()]->shape().rank() == 1) {  // no input channels
            e.kind = SparseUpdateKind::kFull;
            break;
          }
          const auto it = channelled.find(e.path);
          if (it == channelled.end() || it->second < 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                where, " matches ", e.path, ", which is not the weight of a linear layer or of a "
                "convolution with groups 1 or depthwise: only those train part of their "
                "channels (train it full or freeze it)"));
          }
          const int64_t c = it->second;
          const auto k = static_cast<int64_t>(std::ceil(parsed.fraction * static_cast<double>(c)));
          e.kind = k >= c ? SparseUpdateKind::kFull : SparseUpdateKind::kChannels;
          e.channels = k < c ? k : 0;
          e.of_channels = k < c ? c : 0;
          break;
        }
        default:
          e.kind = parsed.kind;
          e.channels = e.of_channels = 0;
      }
    }
    if (matched == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the pattern matches no parameter of the model"));
    }
  }
  // A trained weight trains its layer's bias.
  for (const SparseUpdatePlan::Entry& e : plan.params) {
    if (e.kind == SparseUpdateKind::kFrozen || !absl::EndsWith(e.path, ".weight")) continue;
    const std::string bias = absl::StrCat(e.path.substr(0, e.path.size() - 6), "bias");
    if (auto it = index.find(bias); it != index.end()) {
      plan.params[it->second].kind = SparseUpdateKind::kFull;
    }
  }
  for (const SparseUpdatePlan::Entry& e : plan.params) {
    plan.total_numel += e.numel;
    plan.trainable_numel += e.trained_numel();
  }
  if (plan.trainable_numel == 0) {
    return absl::InvalidArgumentError(
        "sparse update: the rules train no parameter (every one is frozen)");
  }
  for (size_t i = 0; i < plan.params.size(); ++i) {
    params[i]->set_trainable(plan.params[i].kind != SparseUpdateKind::kFrozen);
    params[i]->set_trained_channels(plan.params[i].channels);
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
    if (e.kind == SparseUpdateKind::kFrozen) continue;
    ++trained;
    if (trained > 12) continue;
    absl::StrAppend(&list, trained > 1 ? ", " : "", e.path);
    if (e.kind == SparseUpdateKind::kChannels) {
      absl::StrAppend(&list, " (", e.channels, " of ", e.of_channels, " channels)");
    }
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
