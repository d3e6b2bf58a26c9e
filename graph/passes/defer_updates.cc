// Note [deferred updates]
// With global-norm clipping every update waits for the whole backward (the norm needs every
// gradient), so a step whose optimizer state lives on NVMe ends with all of its update IO (28
// bytes per parameter with AdamW: read the gradient, parameter and both moments, write three
// back) after the last compute node, with nothing left to overlap it. The next step does not
// need those updates all at once, though: its forward needs parameter i only when it reaches
// layer i. So the Program leaves the trailing updates of step N in flight and runs them inside
// step N+1, each on the IO stream right before the first node of step N+1 that touches one of
// its values (the fetch of the parameter it wrote, normally), with step N's learning rate, step
// count and global norm. The forward then overlaps the updates as the backward overlaps them
// without clipping.
//
// The deferred updates are those among the optimizer updates that end the step's last sequence
// that no update left after them touches (the updates of small parameters kept on the device,
// OffloadOptions::persistence_threshold, stay in the step among them).
//
// Only an update whose every operand lives at an off-device home, and that writes only values
// homed on NVMe (or its gradient's home, which it alone reads), is deferred: nothing but the
// side streams read those (Program::ReadState and Evaluate apply the pending updates first), so
// no observer can see a value half a step old, and no compute node depends on it. The values are bitwise those of the undeferred run.
//
// Note [handing the parameter over]
// A deferred update placed right before the fetch of the parameter it writes would write the new
// parameter to NVMe, and the fetch would read it straight back. Instead the update also copies
// each updated chunk into the fetch's destination, and the fetch, which would bring the same
// bytes, is skipped; that saves a read of every parameter per step (4 of the 32 bytes per
// parameter that an NVMe step moves). The destination's block is free: the update runs on the
// IO stream in the fetch's place, after every node before the fetch, as the fetch itself would.
// A ZeRO stage-3 fetch (on the communication stream, which waits for the update) still gathers
// the other ranks' shards; only the read of this rank's shard is saved. Only in the steady
// sequence: a tail run on its own (Program::Flush) has no fetch after it.
#include <algorithm>

#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {

bool Deferrable(const Graph& graph, const Node& n, ValueId norm) {
  if (n.op->kind() != OpKind::kOffloadedUpdate) return false;
  for (ValueId v : n.inputs) {
    if (v == norm) continue;
    const Value& value = graph.value(v);
    if (!IsPersistent(value.role) || value.home == MemoryTier::kDevice) return false;
  }
  for (int slot : n.op->MutatedInputs()) {
    // Clipping scales the gradient in place: its home off the device (a kSpilled value) is read
    // by this update alone and written again only by the next backward, after it.
    const Value& written = graph.value(n.inputs[slot]);
    if (written.home != MemoryTier::kNvme && written.role != ValueRole::kSpilled) return false;
  }
  return true;
}

// The values a node reads or writes, but for the global norm (which the deferred update reads
// from the Program's copy).
std::vector<ValueId> Touched(const Node& n, ValueId norm) {
  std::vector<ValueId> t;
  for (const auto* vs : {&n.inputs, &n.outputs}) {
    for (ValueId v : *vs) {
      if (v != kNoValue && v != norm) t.push_back(v);
    }
  }
  std::sort(t.begin(), t.end());
  return t;
}

bool Intersect(const std::vector<ValueId>& a, const std::vector<ValueId>& b) {
  for (size_t i = 0, j = 0; i < a.size() && j < b.size();) {
    if (a[i] == b[j]) return true;
    a[i] < b[j] ? ++i : ++j;
  }
  return false;
}

// Note [handing the parameter over]: which input of `fetch` is the parameter that `update`
// writes, all of what its home holds (the whole parameter, or a ZeRO stage-3 parameter's shard,
// which the fetch reads into its place in the copy and gathers the rest); -1 if none.
int HandsOver(const Graph& graph, const Node& update, const Node& fetch) {
  const std::vector<int> m = update.op->MutatedInputs();
  if (fetch.op->kind() != OpKind::kFetch || std::find(m.begin(), m.end(), 0) == m.end()) return -1;
  const auto at = std::find(fetch.inputs.begin(), fetch.inputs.end(), update.inputs[0]);
  if (at == fetch.inputs.end()) return -1;
  const int i = static_cast<int>(at - fetch.inputs.begin());
  const Value& param = graph.value(update.inputs[0]);
  const Value& grad = graph.value(update.inputs[1]);
  const Value& copy = graph.value(fetch.outputs[i]);
  // A partial-channel update writes only the trained channels (Note [partial channels]): the
  // fetch would still have to bring the others.
  const bool whole = !param.shard && !grad.shard && copy.nbytes() == param.nbytes() &&
                     ops::UpdateSliceOf(*update.op).whole();
  const bool shard = param.shard && !copy.shard && grad.numel() == param.numel();
  return whole || shard ? i : -1;
}

}  // namespace

std::vector<int> DeferredUpdates(const Graph& graph, const std::vector<int>& entries,
                                ValueId norm) {
  // Scanning the trailing optimizer updates from the end: a deferrable one is deferred unless a
  // later one that stays in the step touches one of its values (it would then run before it).
  std::vector<bool> kept_touches(graph.num_values(), false);
  std::vector<int> deferred;
  for (size_t i = entries.size(); i-- > 0;) {
    const Node& n = graph.nodes()[entries[i]];
    if (!IsOptimizerUpdate(n)) break;
    const std::vector<ValueId> touched = Touched(n, norm);
    bool defer = Deferrable(graph, n, norm);
    for (ValueId v : touched) defer = defer && !kept_touches[v];
    if (defer) {
      deferred.push_back(entries[i]);
    } else {
      for (ValueId v : touched) kept_touches[v] = true;
    }
  }
  std::reverse(deferred.begin(), deferred.end());
  return deferred;
}

DeferredSequence InterleaveDeferred(const Graph& graph, const std::vector<int>& tail,
                                    const std::vector<int>& body, ValueId norm) {
  const std::vector<Node>& nodes = graph.nodes();
  const int t = static_cast<int>(tail.size()), b = static_cast<int>(body.size());
  std::vector<std::vector<ValueId>> touched(t);
  for (int k = 0; k < t; ++k) touched[k] = Touched(nodes[tail[k]], norm);
  DeferredSequence out;
  out.completion.assign(t, -1);
  // Each deferred node goes before the first body node that touches one of its values; one that
  // shares a value with a later deferred node stays before it.
  // Per value, the first body node touching it, the first one not on the IO stream (compute, or a
  // gather on the communication stream), which must wait (the IO stream runs in order), and the
  // first compute node. When no compute node touches a deferred node's values, only the gather
  // waits for it: what reads the gathered copy waits for the gather anyway, and the compute
  // stream goes on meanwhile (the first layer's compute need not wait for the later layers'
  // updates that its prefetched gathers wait for).
  std::vector<int> first(graph.num_values(), b), first_off_io(graph.num_values(), b),
      first_compute(graph.num_values(), b);
  for (int i = b - 1; i >= 0; --i) {
    const StreamKind stream = StreamOf(graph, nodes[body[i]]);
    for (ValueId v : Touched(nodes[body[i]], norm)) {
      first[v] = i;
      if (stream != StreamKind::kIo) first_off_io[v] = i;
      if (stream == StreamKind::kCompute) first_compute[v] = i;
    }
  }
  std::vector<int> at(t, b);
  out.binds_one_node.assign(t, false);
  for (int k = 0; k < t; ++k) {
    int wait = b, compute = b;
    for (ValueId v : touched[k]) {
      at[k] = std::min(at[k], first[v]);
      wait = std::min(wait, first_off_io[v]);
      compute = std::min(compute, first_compute[v]);
    }
    if (wait < b) out.completion[k] = body[wait];
    out.binds_one_node[k] = wait < b && compute == b;
  }
  for (int k = t - 2; k >= 0; --k) {
    for (int j = k + 1; j < t; ++j) {
      if (Intersect(touched[k], touched[j])) at[k] = std::min(at[k], at[j]);
    }
  }
  std::vector<int> order(t);
  for (int k = 0; k < t; ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return at[x] < at[y]; });
  size_t next = 0;
  out.hands_to.assign(t, -1);
  out.hands_input.assign(t, -1);
  for (int i = 0; i <= b; ++i) {
    for (; next < order.size() && at[order[next]] == i; ++next) {
      out.entries.push_back(tail[order[next]]);
      const int input = i < b ? HandsOver(graph, nodes[tail[order[next]]], nodes[body[i]]) : -1;
      if (input >= 0) {
        out.hands_to[order[next]] = body[i];
        out.hands_input[order[next]] = input;
      }
    }
    if (i < b) out.entries.push_back(body[i]);
  }
  return out;
}

}  // namespace strata::graph
