// Note [home tiers]
// Every persistent value has a home tier (Value::home): where its bytes stay between uses. The
// user picks one per class of state (OffloadOptions): parameters (trainable or frozen), gradients
// (the final gradient an update reads, or its accumulator over micro-batches) and optimizer state
// (AdamW's moments, SGD's momentum). Buffers (BatchNorm's running statistics), inputs, constants
// and outputs stay on the device: they are small and written by the forward itself. So do the
// parameters of fewer than OffloadOptions::persistence_threshold elements (biases, norms), with
// their gradients and optimizer state, as DeepSpeed's param_persistence_threshold keeps them on
// the GPU: their bytes are nothing, but each offloaded value costs a fetch, a write-back and an
// update round trip through the IO stream and the engine per step, and on a small machine each
// of those wakes threads that take a core from compute.
//
// A gradient is an arena value, made by the backward every step. A host or NVMe home for it means
// "written there once final" (ScheduleOffload adds the write-back and a kSpilled value that
// the update reads), which keeps the gradients of a large model out of the device arena. The
// same holds for the activations that activation checkpointing keeps (each block's input, read by
// the recomputed copies in the backward): with an `activations` home they wait there.
//
// With parameters and optimizer state on NVMe, the final gradient an offloaded update reads waits
// on the host even when gradients are placed on the device (OffloadOptions::StagesGradsOnHost),
// as ZeRO-Infinity hands its CPU optimizer the gradients in host memory: the update runs off the
// device anyway, and a gradient in the arena dies with its step, which would keep the update in
// the step. With clipping every update waits for the whole backward, so in the step its NVMe
// traffic has nothing left to overlap; with the gradient on the host it runs inside the next
// step's forward instead (Note [deferred updates]). The gradients stay on the device through the
// backward; only the final ones (this rank's shards with ZeRO) are copied, once, to host bytes
// of their own. A host budget keeps them on the device: it is the user's bound on the host.
#include <vector>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {

bool IsOptimizerUpdate(const Node& n) {
  const OpKind k = n.op->kind();
  return k == OpKind::kAdamWUpdate || k == OpKind::kSgdUpdate || k == OpKind::kOffloadedUpdate;
}

absl::Status PlaceState(Graph& graph, const OffloadOptions& options) {
  if (!options.offloads()) return absl::OkStatus();
  if (options.persistence_threshold < 0) {
    return absl::InvalidArgumentError(absl::StrCat("offload: persistence_threshold = ",
                                                   options.persistence_threshold,
                                                   " must be >= 0"));
  }
  if (options.uses_nvme() && options.io.dir.empty()) {
    return absl::InvalidArgumentError(
        "offload: state placed on nvme needs a directory for its swap file (--nvme-dir, "
        "OffloadOptions::io.dir)");
  }
  for (ValueId v = 0; v < graph.num_values(); ++v) {
    Value& value = graph.mutable_value(v);
    if (value.role == ValueRole::kParameter) {
      value.home = options.Persists(value.numel()) ? MemoryTier::kDevice : options.params;
    }
  }
  if (options.activations != MemoryTier::kDevice) {
    std::vector<bool> copied(graph.num_values(), false);  // made by a recomputed copy
    bool recomputed = false;
    for (const Node& n : graph.nodes()) {
      if (!n.recomputed) continue;
      recomputed = true;
      for (ValueId v : n.outputs) {
        if (v != kNoValue) copied[v] = true;
      }
    }
    if (!recomputed) {
      return absl::InvalidArgumentError(
          "offload: an activations home places the block inputs that recompute keeps; it needs "
          "recompute (--recompute, TrainOptions::recompute) and a model with recompute "
          "boundaries");
    }
    for (const Node& n : graph.nodes()) {
      if (!n.recomputed) continue;
      for (ValueId v : n.inputs) {
        Value& value = graph.mutable_value(v);
        if (value.role == ValueRole::kActivation && !copied[v]) value.home = options.activations;
      }
    }
  }
  for (const Node& n : graph.nodes()) {
    if (!IsOptimizerUpdate(n)) continue;
    Value& grad = graph.mutable_value(n.inputs[1]);
    if (options.grads != MemoryTier::kDevice && grad.role == ValueRole::kOutput) {
      return absl::InvalidArgumentError(absl::StrCat(
          "offload: keep_gradients keeps every gradient readable on the device; it cannot be "
          "combined with gradients on ", MemoryTierName(options.grads)));
    }
    const bool persists = options.Persists(graph.value(n.inputs[0]).numel());
    const bool staged = options.StagesGradsOnHost() && grad.role != ValueRole::kOutput;
    grad.home = persists ? MemoryTier::kDevice : staged ? MemoryTier::kHost : options.grads;
    for (size_t i = 2; i < n.inputs.size(); ++i) {
      Value& state = graph.mutable_value(n.inputs[i]);
      if (state.role == ValueRole::kOptimizerState) {
        state.home = persists ? MemoryTier::kDevice : options.optimizer;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::graph
