// Note [bucketed all-reduces]
// A data-parallel step all-reduces each gradient that stays whole on every rank: every gradient
// at stage 0, and at stages 1-3 those of fewer than ZeroOptions::persistence_threshold elements
// (Note [zero partition]). A transformer has a few such small tensors per block (norms, biases),
// and one collective each costs a hand-off to the communication thread and a round of messages
// that carry a few hundred bytes. So the all_reduce nodes of the small gradients are merged, in
// the order the backward makes those gradients final, into buckets of up to
// ZeroOptions::bucket_bytes (0: one per gradient), which the Program sends as one
// AllReduceBucketed each; larger gradients keep their own all_reduce (packing a large one would
// only copy it twice). ScheduleUpdates then places a bucket after the last of its gradients is
// final, and the members' updates after it: the small gradients wait a little longer (their
// bytes stay planned), the few collectives still overlap the backward, and every rank runs the
// same buckets in the same order.
#include <algorithm>
#include <set>
#include <vector>

#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {

// The index of the last node before `before` that writes v (an output, or an input it mutates:
// a gradient accumulator); -1 if none.
int LastWriter(const std::vector<Node>& nodes, ValueId v, int before) {
  for (int i = before - 1; i >= 0; --i) {
    const Node& n = nodes[i];
    if (std::find(n.outputs.begin(), n.outputs.end(), v) != n.outputs.end()) return i;
    for (int slot : n.op->MutatedInputs()) {
      if (n.inputs[slot] == v) return i;
    }
  }
  return -1;
}

}  // namespace

absl::Status BucketAllReduces(Graph& graph, int64_t small_elements, int64_t bucket_bytes) {
  if (bucket_bytes <= 0) return absl::OkStatus();
  std::vector<Node>& nodes = graph.mutable_nodes();
  struct Member {
    int node;    // its all_reduce
    int writer;  // where the gradient is final
    int64_t bytes;
  };
  // The gradients: what the updates read (a gradient accumulator with micro-batches); not the
  // scalars that clipping or a synchronized BatchNorm sums over the ranks.
  std::set<ValueId> gradients;
  for (const Node& n : nodes) {
    if (IsOptimizerUpdate(n)) gradients.insert(n.inputs[1]);
  }
  std::vector<Member> small;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    const Node& n = nodes[i];
    if (n.op->kind() != OpKind::kAllReduce || n.inputs.size() != 1) continue;
    if (!gradients.contains(n.inputs[0])) continue;
    const Value& g = graph.value(n.inputs[0]);
    if (g.type.shape.numel() >= small_elements) continue;
    small.push_back({i, LastWriter(nodes, n.inputs[0], i), static_cast<int64_t>(g.type.nbytes())});
  }
  std::stable_sort(small.begin(), small.end(),
                   [](const Member& a, const Member& b) { return a.writer < b.writer; });
  // The first member's node takes the bucket's inputs; the others' nodes go.
  std::vector<bool> dropped(nodes.size(), false);
  int head = -1;
  int64_t bytes = 0;
  for (const Member& m : small) {
    if (head >= 0 && bytes + m.bytes <= bucket_bytes) {
      nodes[head].inputs.push_back(nodes[m.node].inputs[0]);
      dropped[m.node] = true;
      bytes += m.bytes;
      continue;
    }
    head = m.node;
    bytes = m.bytes;
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    Node& n = nodes[i];
    if (n.op->kind() == OpKind::kAllReduce && n.inputs.size() > 1) {
      n.op = ops::AllReduceOp(static_cast<int>(n.inputs.size()));
    }
  }
  std::vector<Node> kept;
  kept.reserve(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!dropped[i]) kept.push_back(std::move(nodes[i]));
  }
  nodes = std::move(kept);
  return absl::OkStatus();
}

}  // namespace strata::graph
