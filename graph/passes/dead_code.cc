#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {

absl::Status EliminateDeadCode(Graph& graph) {
  const std::vector<Node>& nodes = graph.nodes();
  std::vector<bool> needed(graph.num_values(), false);
  for (ValueId v = 0; v < graph.num_values(); ++v) {
    needed[v] = graph.value(v).role == ValueRole::kOutput;
  }
  std::vector<bool> remove(nodes.size(), true);
  for (int i = static_cast<int>(nodes.size()) - 1; i >= 0; --i) {
    const Node& n = nodes[i];
    bool k = !n.op->MutatedInputs().empty();
    for (ValueId v : n.outputs) k = k || (v != kNoValue && needed[v]);
    if (!k) continue;
    remove[i] = false;
    for (ValueId v : n.inputs) needed[v] = true;
  }
  graph.RemoveNodes(remove);
  return absl::OkStatus();
}

}  // namespace strata::graph
