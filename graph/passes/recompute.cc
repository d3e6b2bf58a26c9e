// Note [activation checkpointing]
// Without it, every activation the backward reads lives from the forward node that writes it to
// the backward node that reads it: at the turn from forward to backward the arena holds all of
// them, O(layers x block activations). With TrainOptions::recompute, each checkpointed block
// (Layer::SetRecomputeBoundary; the tracer gives its forward nodes one Node::block) keeps only
// what leaves it: its input, which a node outside the block wrote, and the values a forward node
// outside the block reads (its output). Every other value of the block that the backward reads is
// recomputed: the block's forward nodes that lead to those values are copied, in order, to just
// before the first backward node that reads one of them, and the backward reads the copies. The
// forward originals then die inside the forward, the copies live only through their block's
// backward, and the largest live set becomes O(layers x block input + one block's activations),
// as torch.utils.checkpoint and ZeRO-Infinity's activation checkpointing give.
//
// A copy runs the same kernels on the same bytes, so its outputs and the step's results are
// bitwise equal to the run without recompute. An op that writes in place (BatchNorm's running
// statistics) is copied as its Op::RecomputeOp, which computes the same outputs and writes
// nothing, so the statistics are updated once per step; an op with no such variant is not copied
// and its outputs are kept instead, as is a value such a node writes in place (the batch
// statistics an all_reduce summed over the ranks). A value a caller reads (a persistent role) is
// kept too.
#include <algorithm>
#include <memory>

#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {

absl::Status RecomputeActivations(Graph& graph) {
  const std::vector<Node>& nodes = graph.nodes();
  const int num_nodes = static_cast<int>(nodes.size());
  const int num_values = graph.num_values();

  // The forward ends before the first node that writes a gradient.
  int backward = num_nodes;
  for (int i = 0; i < num_nodes && backward == num_nodes; ++i) {
    for (ValueId v : nodes[i].outputs) {
      if (v != kNoValue && graph.value(v).role == ValueRole::kGradient) backward = i;
    }
  }
  int num_blocks = 0;
  for (int i = 0; i < backward; ++i) num_blocks = std::max(num_blocks, nodes[i].block + 1);
  if (num_blocks == 0) return absl::OkStatus();

  // The block that wrote each value (-1: none), and which of its values stay alive.
  std::vector<int> block_of(num_values, -1);
  std::vector<bool> kept(num_values, false);
  for (int i = 0; i < backward; ++i) {
    const Node& n = nodes[i];
    const bool copyable = n.op->MutatedInputs().empty() || n.op->RecomputeOp() != nullptr;
    for (ValueId v : n.inputs) {
      if (block_of[v] >= 0 && block_of[v] != n.block) kept[v] = true;  // read outside its block
    }
    for (ValueId v : n.outputs) {
      if (v == kNoValue) continue;
      block_of[v] = n.block;
      kept[v] = !copyable || IsPersistent(graph.value(v).role);
    }
    // A copy of the node that wrote it would miss what this node, never copied, wrote into it
    // (an all_reduce: Note [synchronized batch norm]).
    if (!copyable) {
      for (int slot : n.op->MutatedInputs()) kept[n.inputs[slot]] = true;
    }
  }
  auto recomputed = [&](ValueId v) { return block_of[v] >= 0 && !kept[v]; };

  // Per block, the first backward node that reads a value to recompute; the copies go before it.
  std::vector<int> first_reader(num_blocks, -1);
  std::vector<bool> needed(num_values, false);
  for (int i = backward; i < num_nodes; ++i) {
    for (ValueId v : nodes[i].inputs) {
      if (!recomputed(v)) continue;
      needed[v] = true;
      if (first_reader[block_of[v]] < 0) first_reader[block_of[v]] = i;
    }
  }
  // The forward nodes those values depend on inside their block.
  std::vector<bool> copy(backward, false);
  for (int i = backward - 1; i >= 0; --i) {
    const Node& n = nodes[i];
    if (n.block < 0) continue;
    for (ValueId v : n.outputs) copy[i] = copy[i] || (v != kNoValue && needed[v]);
    if (!copy[i]) continue;
    for (ValueId v : n.inputs) needed[v] = needed[v] || (recomputed(v) && block_of[v] == n.block);
  }

  // The copies, in forward order, each reading earlier copies of its block.
  std::vector<ValueId> copy_of(num_values, kNoValue);
  std::vector<std::vector<Node>> before(num_nodes);
  for (int i = 0; i < backward; ++i) {
    if (!copy[i]) continue;
    Node c = nodes[i];
    if (std::shared_ptr<const Op> op = c.op->RecomputeOp()) c.op = std::move(op);
    c.recomputed = true;
    c.workspace = kNoValue;
    for (ValueId& v : c.inputs) {
      if (copy_of[v] != kNoValue) v = copy_of[v];
    }
    for (ValueId& v : c.outputs) {
      if (v == kNoValue) continue;
      const Value original = graph.value(v);  // a copy: AddValue may reallocate
      const ValueId fresh = graph.AddValue(original.type, ValueRole::kActivation, original.name);
      if (recomputed(v)) copy_of[v] = fresh;
      v = fresh;
    }
    before[first_reader[c.block]].push_back(std::move(c));
  }

  std::vector<Node> result;
  std::vector<Node>& old_nodes = graph.mutable_nodes();
  result.reserve(old_nodes.size());
  for (int i = 0; i < num_nodes; ++i) {
    for (Node& c : before[i]) result.push_back(std::move(c));
    Node& n = old_nodes[i];
    if (i >= backward) {
      for (ValueId& v : n.inputs) {
        if (copy_of[v] != kNoValue) v = copy_of[v];
      }
    }
    result.push_back(std::move(n));
  }
  old_nodes = std::move(result);
  return absl::OkStatus();
}

}  // namespace strata::graph
