// Note [fused cross-entropy]
// Autodiff gives cross_entropy a gradient node that runs the fused kernel, which computes the loss
// on its way to d logits. When nothing but the caller reads the forward loss, the forward node is
// redundant: drop it and let the gradient node write the loss value instead. The logits are then
// read once instead of twice (at GPT sizes, B*T*V floats).
#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {

absl::Status FuseCrossEntropy(Graph& graph) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  std::vector<bool> read(graph.num_values(), false);
  for (const Node& n : nodes) {
    for (ValueId v : n.inputs) read[v] = true;
  }
  std::vector<bool> remove(nodes.size(), false);
  // A gradient node writes one loss: a second unread cross_entropy over the same logits and
  // targets (a copy kept as an output) must keep its own node, or taking this one would leave
  // the first loss unwritten.
  std::vector<bool> taken(nodes.size(), false);
  for (size_t f = 0; f < nodes.size(); ++f) {
    if (nodes[f].op->kind() != OpKind::kCrossEntropy || read[nodes[f].outputs[0]]) continue;
    for (size_t g = f + 1; g < nodes.size(); ++g) {
      Node& grad = nodes[g];
      if (!taken[g] && grad.op->kind() == OpKind::kCrossEntropyWithGrad &&
          grad.inputs[0] == nodes[f].inputs[0] && grad.inputs[1] == nodes[f].inputs[1] &&
          grad.op->Attributes() == nodes[f].op->Attributes()) {
        grad.outputs[0] = nodes[f].outputs[0];
        remove[f] = true;
        taken[g] = true;
        break;
      }
    }
  }
  graph.RemoveNodes(remove);
  return absl::OkStatus();
}

}  // namespace strata::graph
