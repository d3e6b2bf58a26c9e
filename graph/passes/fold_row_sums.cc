// Note [row sums of a linear gradient]
// A sparse update that trains the biases of a block but none of its weights ends its backward at
// the block's first layer norm: its beta's gradient is the sum over the rows of the layer norm's
// output gradient, which is the dx of the linear layer it feeds (sum_to(linear_grad(w, dy).dx)).
// Nothing else reads that dx: below it nothing trains. The sum of dx = dy w over its rows is
// (the sum of dy's rows) w = db w, and db is the linear layer's own bias gradient, so the
// (rows, out) x (out, in) product becomes an (out) x (out, in) one and dx's buffer disappears. In
// the GPT fine-tune that trains the last block and the biases of the block before it, this is
// the attention input projection's dx, a quarter of that block's backward products (3C^2 of
// 12C^2 per row).
//
// Applies to a linear_grad without a weight gradient (linear_grad[no_weight_grad]) whose layer
// has a bias, whose dx is a plain gradient read by one sum_to over all of its leading dimensions
// and nothing else; the fused node takes the linear_grad's place and writes the sum_to's output.
// f32 only: run it before ApplyMixedPrecision, and only for f32 steps.
#include <vector>

#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"

namespace strata::graph {

absl::Status FoldRowSumsIntoLinearGrad(Graph& graph) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  const auto [readers, producer] = CountUses(graph);
  std::vector<bool> remove(nodes.size(), false);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& sum = nodes[i];
    if (sum.op->kind() != OpKind::kSumTo || sum.inputs.size() != 1) continue;
    const ValueId dx = sum.inputs[0];
    const int p = producer[dx];
    if (p < 0 || remove[p] || readers[dx] != 1 || nodes[p].outputs[0] != dx ||
        nodes[p].phase != sum.phase || graph.value(dx).role != ValueRole::kGradient) {
      continue;
    }
    const Shape& rows = graph.value(dx).type.shape;
    if (rows.rank() < 2 || graph.value(sum.outputs[0]).type.shape != Shape{rows.dim(-1)}) continue;
    std::shared_ptr<const Op> fused = ops::LinearGradRowSumOp(*nodes[p].op);
    if (fused == nullptr || nodes[p].outputs.size() != 2 || nodes[p].outputs[1] == kNoValue) {
      continue;
    }
    Node& grad = nodes[p];
    grad.op = std::move(fused);
    grad.outputs[0] = sum.outputs[0];
    remove[i] = true;
  }
  graph.RemoveNodes(remove);
  return absl::OkStatus();
}

}  // namespace strata::graph
