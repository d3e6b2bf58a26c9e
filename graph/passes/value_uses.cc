#include "graph/passes/passes.h"

namespace strata::graph {

ValueUses CountUses(const Graph& graph) {
  ValueUses uses{std::vector<int>(graph.num_values(), 0), std::vector<int>(graph.num_values(), -1)};
  const std::vector<Node>& nodes = graph.nodes();
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (ValueId v : nodes[i].inputs) ++uses.readers[v];
    for (ValueId v : nodes[i].outputs) {
      if (v != kNoValue) uses.producer[v] = static_cast<int>(i);
    }
  }
  return uses;
}

}  // namespace strata::graph
