#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {

absl::Status EliminateDeadCode(Graph& graph) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  std::vector<bool> needed(graph.num_values(), false);
  for (ValueId v = 0; v < graph.num_values(); ++v) {
    needed[v] = graph.value(v).role == ValueRole::kOutput;
  }
  std::vector<bool> keep(nodes.size(), false);
  for (int i = static_cast<int>(nodes.size()) - 1; i >= 0; --i) {
    const Node& n = nodes[i];
    bool k = !n.op->MutatedInputs().empty();
    for (ValueId v : n.outputs) k = k || (v != kNoValue && needed[v]);
    if (!k) continue;
    keep[i] = true;
    for (ValueId v : n.inputs) needed[v] = true;
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (keep[i]) kept.push_back(std::move(nodes[i]));
  }
  nodes = std::move(kept);
  return absl::OkStatus();
}

}  // namespace strata::graph
