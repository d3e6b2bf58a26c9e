// Note [fused residual add]
// A transformer block adds each projection to the residual stream: y = x + linear(h). The linear
// kernel already starts its output from the bias and lets sgemm accumulate onto it (beta = 1), so
// starting from x + b instead costs one read of x in a pass that runs anyway, and the add node —
// a full read of both operands and a write of y — disappears, as does the linear output's buffer.
// Runs after autodiff: the add's gradient is the identity and linear_grad never reads the linear
// output, so the backward graph is unchanged. Only a linear output that nothing else reads and
// that is not a program output is fused.
//
// The backward has the mirror image: the residual stream's gradient is the sum of what flows back
// along the stream and the layer norm's input gradient, add(layer_norm_grad.dx, g). The
// layer-norm gradient kernel writes dx row by row anyway, so it adds g as it goes
// (layer_norm_grad_residual) and the add disappears with dx's buffer. The fused node takes the
// add's place; it is only fused when no node in between reads dgamma or dbeta, which it now
// writes later.
#include <algorithm>

#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {

// Whether a node after `p` and before `end` reads one of node p's outputs other than the first.
bool ReadBetween(const std::vector<Node>& nodes, const Node& from, size_t p, size_t end) {
  for (size_t j = p + 1; j < end; ++j) {
    for (ValueId in : nodes[j].inputs) {
      if (std::find(from.outputs.begin() + 1, from.outputs.end(), in) != from.outputs.end()) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace

absl::Status FuseResidualAdd(Graph& graph) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  const auto [readers, producer] = CountUses(graph);
  std::vector<bool> remove(nodes.size(), false);
  for (size_t i = 0; i < nodes.size(); ++i) {
    Node& add = nodes[i];
    if (add.op->kind() != OpKind::kAdd || add.inputs.size() != 2 ||
        graph.value(add.inputs[0]).type != graph.value(add.inputs[1]).type) {
      continue;
    }
    for (int k = 0; k < 2; ++k) {
      const ValueId v = add.inputs[k];
      const int p = producer[v];
      if (p < 0 || remove[p] || readers[v] != 1 || nodes[p].outputs[0] != v ||
          nodes[p].phase != add.phase) {
        continue;
      }
      const Node& from = nodes[p];
      const ValueRole role = graph.value(v).role;
      std::vector<ValueId> inputs = from.inputs;
      inputs.push_back(add.inputs[1 - k]);
      if (from.op->kind() == OpKind::kLinear && role == ValueRole::kActivation) {
        add = Node{ops::LinearResidualOp(/*has_bias=*/from.inputs.size() == 3), std::move(inputs),
                   add.outputs, from.scope, kNoValue, add.phase, add.block};
      } else if (from.op->kind() == OpKind::kLayerNormGrad && role == ValueRole::kGradient &&
                 !ReadBetween(nodes, from, p, i)) {
        std::vector<ValueId> outputs = from.outputs;
        outputs[0] = add.outputs[0];
        add = Node{ops::LayerNormGradResidualOp(), std::move(inputs), std::move(outputs),
                   from.scope, kNoValue, add.phase};
      } else {
        continue;
      }
      remove[p] = true;
      break;
    }
  }
  graph.RemoveNodes(remove);
  return absl::OkStatus();
}

}  // namespace strata::graph
