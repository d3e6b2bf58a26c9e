// Note [zero partition]
// ZeRO over the data-parallel ranks (TrainOptions::zero). The traced step of Note [data parallel]
// (graph/compile.cc) all-reduces every gradient and updates every parameter whole on every rank.
// With stage >= 1 this pass rewrites it, per trainable parameter p of at least
// `persistence_threshold` elements (smaller ones keep the stage-0 nodes):
//   - all_reduce(g) becomes reduce_scatter(g) -> gs, a value of g's type that holds only this
//     rank's shard (Value::shard, collectives::ShardOf over the flattened elements), and the
//     grad_norm and update read gs: the update changes only this rank's elements of p, with
//     optimizer state that holds only those elements;
//   - stages 1 and 2: all_gather(p) after the update sends every rank's updated elements to all,
//     so each rank holds p whole again for the next forward. Both stages run the same nodes:
//     strata frees each gradient as soon as its reduction is done (Note [updates as soon as the
//     gradient is final]), so the whole gradients that stage 1 would keep never exist at once;
//   - stage 3: p itself holds only its shard (frozen parameters too). ScheduleOffload then treats
//     it as a value homed off the compute tier: every node that reads it reads a copy that a
//     fetch filled by an all-gather, issued ahead by the lookahead and released after its window
//     (ZeroOptions::reuse_bytes), so the forward and the backward gather it once each; the update
//     reads the shard at its home. That home is any tier the placement gives parameters, so
//     stage 3 with parameters on NVMe is ZeRO-Infinity.
// A parameter that trains only some channels (Note [partial channels] in graph/ops/channel_ops.cc)
// has a gradient and optimizer state of those channels alone, (out, k): a shard of the flattened
// parameter cuts them into runs that no flat shard of theirs matches. They are kept as a small
// parameter's are (stage 0's all_reduce of the gradient, the state whole on every rank, every
// rank updating the trained channels alike), which costs little, since what trains is the small
// part of such a weight. At stages 1-2 the parameter is whole on every rank anyway; at stage 3 it
// is sharded as a frozen one is (its untrained channels are most of it), and its update reads a
// gathered copy and writes back this rank's shard (Note [partial channels offloaded] in
// graph/passes/schedule_offload.cc). Updating the replicated state from the shard alone would not
// do: SGD's weight decay feeds the parameter into the momentum buffer, so every rank needs every
// trained element of the parameter to keep the state identical.
// Clipping needs the norm of the whole gradient: the squares of the shards' norms are summed on
// each rank, all-reduced, and the replicated (unsharded) gradients' squared norms, equal on every
// rank, are added once after that sum.
// Bytes sent per step (Note [bytes sent] in collectives/communicator.h), over the sharded
// parameters of Psi elements: stages 1-2 reduce-scatter and all-gather each once, 2 (N-1)/N Psi,
// as much as stage 0's all-reduce; stage 3 gathers twice and reduce-scatters once, 1.5x that. A
// partial-channel weight sends stage 0's all-reduce of its trained channels in every stage, and
// at stage 3 three gathers of the whole (reuse_bytes 0): for the forward, the backward and its
// update.
#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "runtime/status.h"

namespace strata::graph {

absl::Status PartitionForZero(Graph& graph, const ZeroOptions& zero, int rank, int world_size) {
  STRATA_RETURN_IF_ERROR(zero.Validate());
  if (zero.stage == 0 || world_size == 1) return absl::OkStatus();
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("zero: rank ", rank, " outside a world of ", world_size));
  }
  auto shard_of = [&](ValueId v) {
    return collectives::ShardOf(graph.value(v).type.shape.numel(), world_size, rank);
  };
  auto large = [&](ValueId v) {
    return graph.value(v).type.shape.numel() >= zero.persistence_threshold;
  };
  std::vector<Node>& nodes = graph.mutable_nodes();
  std::map<ValueId, int> all_reduce_of;  // gradient -> its all_reduce node
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (nodes[i].op->kind() == OpKind::kAllReduce) all_reduce_of[nodes[i].inputs[0]] = i;
  }
  std::map<ValueId, ValueId> shard_of_grad;  // gradient -> its reduce-scattered shard
  std::vector<bool> gather_after(nodes.size(), false);
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    Node& u = nodes[i];
    if (!IsOptimizerUpdate(u) || !large(u.inputs[0])) continue;
    const ValueId p = u.inputs[0], g = u.inputs[1];
    if (!ops::UpdateSliceOf(*u.op).whole()) {  // partial channels: stage 0's nodes, p sharded
      if (zero.stage == 3) graph.mutable_value(p).shard = shard_of(p);
      continue;
    }
    auto ar = all_reduce_of.find(g);
    if (ar == all_reduce_of.end()) {
      return absl::InternalError(absl::StrCat("zero: the gradient of ", graph.value(p).name,
                                              " has no all_reduce to partition"));
    }
    const collectives::ShardRange shard = shard_of(p);
    const Value& gv = graph.value(g);
    const ValueId gs = graph.AddValue(gv.type, ValueRole::kGradient,
                                      absl::StrCat(graph.value(p).name, ".grad (shard)"));
    graph.mutable_value(gs).shard = shard;
    Node& rs = nodes[ar->second];
    rs.op = ops::ReduceScatterOp();
    rs.outputs = {gs};
    shard_of_grad[g] = gs;
    u.inputs[1] = gs;
    for (size_t k = 2; k < u.inputs.size(); ++k) {
      Value& state = graph.mutable_value(u.inputs[k]);
      if (state.role == ValueRole::kOptimizerState) state.shard = shard;
    }
    if (zero.stage == 3) {
      graph.mutable_value(p).shard = shard;
    } else {
      gather_after[i] = true;
    }
  }
  if (zero.stage == 3) {  // frozen parameters: gathered for their uses, never reduced
    for (ValueId v = 0; v < graph.num_values(); ++v) {
      Value& value = graph.mutable_value(v);
      if (value.role == ValueRole::kParameter && !value.shard && large(v) &&
          value.type.dtype == DType::kF32) {
        bool updated = false;
        for (const Node& n : nodes) updated = updated || (IsOptimizerUpdate(n) && n.inputs[0] == v);
        if (!updated) value.shard = shard_of(v);
      }
    }
  }

  // grad_norm reads the shard; the global norm sums the shards' squares over the ranks first.
  std::vector<bool> norm_of_shard(graph.num_values(), false);
  for (Node& n : nodes) {
    if (n.op->kind() != OpKind::kGradNorm) continue;
    if (auto it = shard_of_grad.find(n.inputs[0]); it != shard_of_grad.end()) {
      n.inputs[0] = it->second;
      norm_of_shard[n.outputs[0]] = true;
    }
  }
  std::vector<Node> out;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    Node& n = nodes[i];
    if (n.op->kind() == OpKind::kGlobalGradNorm) {
      std::vector<ValueId> sharded, whole;
      for (ValueId norm : n.inputs) (norm_of_shard[norm] ? sharded : whole).push_back(norm);
      if (!sharded.empty()) {
        const ValueId partial = graph.AddValue({Shape{}, DType::kF32}, ValueRole::kActivation,
                                               "grad_norm_squared (shards)");
        Node sum{ops::GlobalGradNormOp(0, /*squared_output=*/true), sharded, {partial}, n.scope};
        sum.phase = n.phase;
        Node reduce{ops::AllReduceOp(), {partial}, {}, n.scope};
        reduce.phase = n.phase;
        out.push_back(std::move(sum));
        out.push_back(std::move(reduce));
        whole.insert(whole.begin(), partial);
        n.op = ops::GlobalGradNormOp(/*squared_inputs=*/1, false);
        n.inputs = whole;
      }
    }
    const bool gather = gather_after[i];
    const ValueId p = n.inputs.empty() ? kNoValue : n.inputs[0];
    const std::string scope = n.scope;
    const Phase phase = n.phase;
    out.push_back(std::move(n));
    if (gather) {
      Node ag{ops::AllGatherOp(), {p}, {}, scope};
      ag.phase = phase;
      out.push_back(std::move(ag));
    }
  }
  nodes = std::move(out);
  return absl::OkStatus();
}

}  // namespace strata::graph
