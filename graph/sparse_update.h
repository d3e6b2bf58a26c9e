// Sparse updates (PockEngine-style fine-tuning): which parameters a run trains, given per
// parameter path pattern. Frozen parameters get no gradient, no optimizer state and no backward
// node that only they need (autodiff differentiates toward the trainable ones alone, and the
// input-gradient chain stops below the earliest of them), so fine-tuning a few layers costs the
// memory and time of those layers' backward only.
//
//   STRATA_ASSIGN_OR_RETURN(SparseUpdateSpec spec, ReadSparseUpdateFile("last_block.json"));
//   // or: SparseUpdateSpec spec{{{"h.5.*", "full"}, {"*.bias", "bias_only"}}};
//   STRATA_ASSIGN_OR_RETURN(SparseUpdatePlan plan, ApplySparseUpdate(model, spec));
//   std::cout << plan.Summary();
//   Compile(model, ...);  // builds the pruned step
//
// The file is a JSON array of {"match": "<glob over parameter paths>", "update": "<rule>"}
// (Note [sparse update rules] in sparse_update.cc says what each rule does); later entries
// override earlier ones, and a parameter no entry matches is frozen.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "graph/module.h"

namespace strata::graph {

enum class SparseUpdateKind { kFrozen, kBiasOnly, kFull, kChannels };

struct SparseUpdateRule {
  std::string match;   // a glob over parameter paths ("h.*.attn.*"; * and ? and [...])
  std::string update;  // "frozen", "bias_only", "full" or "channels:F", 0 < F <= 1
};

struct SparseUpdateSpec {
  std::vector<SparseUpdateRule> rules;
};

// Parses `text` (the JSON array above); `source` names it in errors (a path, "--sparse-update").
absl::StatusOr<SparseUpdateSpec> ParseSparseUpdateJson(absl::string_view text,
                                                       absl::string_view source);
absl::StatusOr<SparseUpdateSpec> ReadSparseUpdateFile(const std::string& path);

// What a spec made of a model's parameters.
struct SparseUpdatePlan {
  struct Entry {
    std::string path;
    // kFull, kChannels or kFrozen once applied.
    SparseUpdateKind kind = SparseUpdateKind::kFrozen;
    int64_t numel = 0;
    // kChannels: the first `channels` of the weight's `of_channels` train (Note [partial
    // channels] in graph/ops/channel_ops.cc).
    int64_t channels = 0, of_channels = 0;
    // The elements that train.
    int64_t trained_numel() const {
      return kind == SparseUpdateKind::kFull       ? numel
             : kind == SparseUpdateKind::kChannels ? numel / of_channels * channels
                                                   : 0;
    }
  };
  std::vector<Entry> params;  // every parameter (not buffers), in model order
  int64_t trainable_numel = 0, total_numel = 0;
  // BatchNorms set to normalize with their running statistics (their weight does not train),
  // and those left in training mode.
  int batchnorms_frozen = 0, batchnorms_training = 0;
  // "sparse update: 14 of 76 tensors trained (2.41M of 10.8M parameters): h.5.*, ln_f.*, ..."
  std::string Summary() const;
};

// The weights channels:F applies to, by path, with the channels it divides: a linear layer's
// (out, in) and a convolution's (O, C, KH, KW) input channels, a depthwise convolution's (C, 1,
// KH, KW) own; -1 for a convolution with other groups (refused).
std::map<std::string, int64_t> PartialChannelWeights(Module& model);

// Resolves `spec` over `model`'s parameters, sets each one's trainable flag and trained channels,
// and freezes the BatchNorms whose weight does not train (nn::BatchNorm2d::SetFrozen). Errors
// (nothing changed): an unknown rule, a fraction outside (0, 1], a pattern that matches no
// parameter, channels:F over a weight that is not a linear or convolution layer's (groups 1 or
// depthwise), a spec that trains nothing.
absl::StatusOr<SparseUpdatePlan> ApplySparseUpdate(Module& model, const SparseUpdateSpec& spec);

}  // namespace strata::graph
