// Note [fused residual add]
// A transformer block adds each projection to the residual stream: y = x + linear(h). The linear
// kernel already starts its output from the bias and lets sgemm accumulate onto it (beta = 1), so
// starting from x + b instead costs one read of x in a pass that runs anyway, and the add node —
// a full read of both operands and a write of y — disappears, as does the linear output's buffer.
// Runs after autodiff: the add's gradient is the identity and linear_grad never reads the linear
// output, so the backward graph is unchanged. Only a linear output that nothing else reads and
// that is not a program output is fused.
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"

namespace strata::graph {

absl::Status FuseResidualAdd(Graph& graph) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  std::vector<int> readers(graph.num_values(), 0);
  std::vector<int> producer(graph.num_values(), -1);
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (ValueId v : nodes[i].inputs) ++readers[v];
    for (ValueId v : nodes[i].outputs) {
      if (v != kNoValue) producer[v] = static_cast<int>(i);
    }
  }
  std::vector<bool> remove(nodes.size(), false);
  for (size_t i = 0; i < nodes.size(); ++i) {
    Node& add = nodes[i];
    if (add.op->name() != "add" || add.inputs.size() != 2 ||
        graph.value(add.inputs[0]).type != graph.value(add.inputs[1]).type) {
      continue;
    }
    for (int k = 0; k < 2; ++k) {
      const ValueId v = add.inputs[k];
      const int p = producer[v];
      if (p < 0 || remove[p] || nodes[p].op->name() != "linear" || readers[v] != 1 ||
          graph.value(v).role != ValueRole::kActivation || nodes[p].phase != add.phase) {
        continue;
      }
      const Node& linear = nodes[p];
      std::vector<ValueId> inputs = linear.inputs;
      inputs.push_back(add.inputs[1 - k]);
      add = Node{ops::LinearResidualOp(/*has_bias=*/linear.inputs.size() == 3), std::move(inputs),
                 add.outputs, linear.scope, kNoValue, add.phase};
      remove[p] = true;
      break;
    }
  }
  graph.RemoveNodes(remove);
  return absl::OkStatus();
}

}  // namespace strata::graph
