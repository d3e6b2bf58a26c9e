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
// the sum over the ranks of one gradient overlaps the backward of the next.
#include <algorithm>

#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {
bool Moves(const Node& n) {
  return n.phase == Phase::kUpdate &&
         (n.op->kind() == OpKind::kAdamWUpdate || n.op->kind() == OpKind::kSgdUpdate ||
          n.op->kind() == OpKind::kGradNorm || n.op->kind() == OpKind::kAllReduce);
}
}  // namespace

absl::Status ScheduleUpdates(Graph& graph) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  for (const Node& n : nodes) {
    if (n.op->kind() == OpKind::kAccumulate) return absl::OkStatus();
  }
  std::vector<Node> updates, rest;
  for (Node& n : nodes) (Moves(n) ? updates : rest).push_back(std::move(n));
  // For each update, the last node of `rest` it must follow.
  std::vector<std::vector<Node>> after(rest.size() + 1);
  for (Node& u : updates) {
    int last = -1;
    for (int i = 0; i < static_cast<int>(rest.size()); ++i) {
      const Node& n = rest[i];
      bool touches = false;
      for (ValueId v : u.inputs) {
        touches = touches || std::find(n.inputs.begin(), n.inputs.end(), v) != n.inputs.end() ||
                  std::find(n.outputs.begin(), n.outputs.end(), v) != n.outputs.end();
      }
      if (touches) last = i;
    }
    u.phase = Phase::kMicroStep;
    after[last + 1].push_back(std::move(u));
  }
  nodes.clear();
  for (Node& u : after[0]) nodes.push_back(std::move(u));
  for (size_t i = 0; i < rest.size(); ++i) {
    nodes.push_back(std::move(rest[i]));
    for (Node& u : after[i + 1]) nodes.push_back(std::move(u));
  }
  return absl::OkStatus();
}

}  // namespace strata::graph
