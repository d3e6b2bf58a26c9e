// Note [partial channels] (graph/ops/channel_ops.cc): the gradient of a weight that trains only
// some channels reads channel_slice(x), which autodiff appends to the backward. Computed there,
// it would keep all of x alive through the forward; this pass moves each such node right after
// x's last forward reader, so that the forward keeps k channels of x for the backward and x
// itself dies where it would have died without them. The node joins that reader's checkpointed
// block, so RecomputeActivations recomputes it with the block.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {

absl::Status HoistChannelSlices(Graph& graph, int forward_nodes) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  for (size_t i = static_cast<size_t>(forward_nodes); i < nodes.size(); ++i) {
    if (nodes[i].op->kind() != OpKind::kChannelSlice) continue;
    const ValueId x = nodes[i].inputs[0];
    int last = -1;  // x's last forward reader; every channel_slice's x has one (the layer)
    for (int j = 0; j < forward_nodes; ++j) {
      const std::vector<ValueId>& in = nodes[j].inputs;
      if (std::find(in.begin(), in.end(), x) != in.end()) last = j;
    }
    if (last < 0) {
      return absl::InternalError(absl::StrCat("hoist_channel_slices: ", graph.ValueToString(x),
                                              " has no reader in the forward"));
    }
    Node slice = std::move(nodes[i]);
    slice.block = nodes[last].block;
    nodes.erase(nodes.begin() + static_cast<std::ptrdiff_t>(i));
    nodes.insert(nodes.begin() + last + 1, std::move(slice));
    ++forward_nodes;
  }
  return absl::OkStatus();
}

}  // namespace strata::graph
