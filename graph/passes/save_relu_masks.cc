// Note [relu masks]
// The gradient of relu and relu6 reads x only to know where 0 < x < upper. Kept for the backward,
// x costs four bytes per element from the forward to its gradient; a mask of that condition costs
// one. So where x has no reader but the activation and its gradient, this pass computes
// relu_mask(x) (u8) right before the activation and turns the gradient into masked_grad(mask,
// dy). x then dies at the activation, which writes its output over it (ActivationOp's in-place
// output). The gradient is the same bits: dy where the condition holds, 0 elsewhere.
//
// In a MobileNetV2 block the ReLU6 inputs are the expanded (x4, x6) activations. A sparse update
// that trains a block's biases only keeps nothing else of that block for the backward (the
// convolutions' and frozen batch norms' input gradients need their weights, not their inputs),
// so its saved activations shrink four-fold; full training keeps the ReLU6 outputs for the next
// convolution's weight gradient and saves the inputs' three bytes in four. f32 steps only.
#include <limits>
#include <vector>

#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"

namespace strata::graph {

absl::Status SaveReluMasks(Graph& graph) {
  const std::vector<int> readers = CountUses(graph).readers;
  std::vector<Node>& nodes = graph.mutable_nodes();
  // The forward activation reading each value, if any.
  std::vector<int> activation(static_cast<size_t>(graph.num_values()), -1);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const OpKind k = nodes[i].op->kind();
    if ((k == OpKind::kRelu || k == OpKind::kRelu6) && nodes[i].inputs.size() == 1) {
      activation[nodes[i].inputs[0]] = static_cast<int>(i);
    }
  }
  std::vector<Node> masks(nodes.size());  // masks[i]: the mask node to put before node i
  std::vector<bool> has_mask(nodes.size(), false);
  for (Node& grad : nodes) {
    const OpKind k = grad.op->kind();
    if ((k != OpKind::kReluGrad && k != OpKind::kRelu6Grad) || grad.inputs.size() != 2) continue;
    const ValueId x = grad.inputs[0];
    const int a = activation[x];
    if (a < 0 || readers[x] != 2 || has_mask[a] || graph.value(x).role != ValueRole::kActivation ||
        graph.value(x).type.dtype != DType::kF32 ||
        nodes[a].op->kind() != (k == OpKind::kReluGrad ? OpKind::kRelu : OpKind::kRelu6)) {
      continue;
    }
    const ValueId mask = graph.AddValue({graph.value(x).type.shape, DType::kU8},
                                        ValueRole::kActivation);
    Node& m = masks[a];
    m.op = ops::ReluMaskOp(k == OpKind::kReluGrad ? std::numeric_limits<float>::infinity() : 6.0f);
    m.inputs = {x};
    m.outputs = {mask};
    m.scope = nodes[a].scope;
    m.phase = nodes[a].phase;
    m.block = nodes[a].block;
    has_mask[a] = true;
    grad.op = ops::MaskedGradOp();
    grad.inputs[0] = mask;
  }
  std::vector<Node> out;
  out.reserve(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (has_mask[i]) out.push_back(std::move(masks[i]));
    out.push_back(std::move(nodes[i]));
  }
  nodes = std::move(out);
  return absl::OkStatus();
}

}  // namespace strata::graph
