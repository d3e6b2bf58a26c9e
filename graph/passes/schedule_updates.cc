// Note [updates as soon as the gradient is final]
// Compile appends every optimizer update after the whole backward pass. With one micro-batch and
// no global-norm clipping nothing forces that wait: a parameter's update may run as soon as its
// gradient is written and every node that reads the parameter (forward or backward) has run. Then
// the gradient buffer dies right away, so the arena never holds all gradients at once — the
// memory PockEngine and DeepSpeed's overlap_comm save. Clipping needs every gradient first: then
// each gradient's norm moves up to where the gradient is final (so an offloaded gradient is read
// once, there) and the updates follow the global norm, after the backward. Accumulation over
// micro-batches updates only after the last one; then nothing moves. In a data-parallel run the
// gradient's all_reduce moves with them, ahead of its norm and update (Note [data parallel]), so
// the sum over the ranks of one gradient overlaps the backward of the next; so do ZeRO's
// reduce_scatter before the update and all_gather after it (Note [zero partition]).
#include <algorithm>

#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {
bool IsCollective(const Node& n) {
  const OpKind k = n.op->kind();
  return k == OpKind::kAllReduce || k == OpKind::kReduceScatter || k == OpKind::kAllGather;
}

bool Moves(const Node& n) {
  return n.phase == Phase::kUpdate &&
         (n.op->kind() == OpKind::kAdamWUpdate || n.op->kind() == OpKind::kSgdUpdate ||
          n.op->kind() == OpKind::kGradNorm || IsCollective(n));
}

bool TouchesAny(const Node& n, const std::vector<ValueId>& values) {
  for (ValueId v : values) {
    if (v == kNoValue) continue;
    if (std::find(n.inputs.begin(), n.inputs.end(), v) != n.inputs.end() ||
        std::find(n.outputs.begin(), n.outputs.end(), v) != n.outputs.end()) {
      return true;
    }
  }
  return false;
}

std::vector<ValueId> ValuesOf(const Node& n) {
  std::vector<ValueId> v = n.inputs;
  v.insert(v.end(), n.outputs.begin(), n.outputs.end());
  return v;
}
}  // namespace

absl::Status ScheduleUpdates(Graph& graph) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  for (const Node& n : nodes) {
    if (n.op->kind() == OpKind::kAccumulate) return absl::OkStatus();
  }
  // A collective that a staying update-phase node also touches stays with it (the all_reduce of
  // the shards' squared norms, which the global norm reads after it).
  std::vector<bool> moves(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    moves[i] = Moves(nodes[i]);
    if (!moves[i] || !IsCollective(nodes[i])) continue;
    for (size_t k = 0; k < nodes.size(); ++k) {
      if (k != i && nodes[k].phase == Phase::kUpdate && !Moves(nodes[k]) &&
          TouchesAny(nodes[k], ValuesOf(nodes[i]))) {
        moves[i] = false;
      }
    }
  }
  std::vector<Node> updates, rest;
  for (size_t i = 0; i < nodes.size(); ++i) (moves[i] ? updates : rest).push_back(std::move(nodes[i]));
  // For each moved node, the last node of `rest` it must follow: the last that touches one of its
  // values, or the place of an earlier moved node that does (a reduce_scatter before the update
  // that reads its shard, an update before the all_gather of its parameter).
  std::vector<std::vector<Node>> after(rest.size() + 1);
  std::vector<int> placed;  // per moved node, its `last`
  for (size_t m = 0; m < updates.size(); ++m) {
    Node& u = updates[m];
    const std::vector<ValueId> values = ValuesOf(u);
    int last = -1;
    for (int i = 0; i < static_cast<int>(rest.size()); ++i) {
      if (TouchesAny(rest[i], u.inputs)) last = i;  // its outputs' readers come after it
    }
    for (size_t e = 0; e < m; ++e) {
      if (TouchesAny(updates[e], values)) last = std::max(last, placed[e]);
    }
    placed.push_back(last);
    u.phase = Phase::kMicroStep;
  }
  for (size_t m = 0; m < updates.size(); ++m) after[placed[m] + 1].push_back(std::move(updates[m]));
  nodes.clear();
  for (Node& u : after[0]) nodes.push_back(std::move(u));
  for (size_t i = 0; i < rest.size(); ++i) {
    nodes.push_back(std::move(rest[i]));
    for (Node& u : after[i + 1]) nodes.push_back(std::move(u));
  }
  return absl::OkStatus();
}

}  // namespace strata::graph
