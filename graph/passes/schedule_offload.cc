// Note [the offload schedule]
// After PlaceState gave every persistent value a home tier, this pass makes the IO explicit, as
// nodes of the IR that run on the Program's side streams:
//   1. an update whose optimizer state lives on host or NVMe becomes an offloaded_update, which
//      reads and writes every operand at its home, chunk by chunk in host buffers (and zeroes a
//      gradient accumulator homed off the device in the same pass, for the zero node after it);
//   2. an arena value with a host or NVMe home is written there (write_back into a kSpilled
//      value) right after its last near reader, and its far readers read that home: a
//      gradient's update, or (a block input that recompute keeps) every node of the backward;
//   3. every other node that reads a value homed off the device (compute, or a collective)
//      reads a kStaged copy instead — so does every node but its update that reads a ZeRO
//      stage-3 parameter, whose home holds only this rank's shard: its fetch reads the shard and
//      all-gathers the rest into the copy (Note [zero partition]), and its windows join across
//      at most ZeroOptions::reuse_bytes instead of the lookahead (with 0, a copy serves the
//      node that reads it and no other); adjacent gathers merge into buckets of up to
//      ZeroOptions::bucket_bytes, growing from one fetch (BucketGathers), one all-gather each:
//      uses of a value are grouped into windows (consecutive uses stay in one window unless more
//      than the lookahead of other staged bytes is used between them), each window gets one
//      fetch ahead of its first use and, when a node of the window writes the value, one
//      write_back after its last use.
// Fetches are issued ahead by a lookahead in bytes: the fetch of window k is placed right after
// the first use of the earliest window j such that the windows between them (j+1 .. k-1) hold at
// most `prefetch_bytes`; with 0 it follows the first use of window k-1, so one window is in
// flight while the previous one is used. A fetch never moves above a write-back of its own
// value, nor out of its phase.
//
// IO nodes run on two side streams (StreamOf, graph/streams.h), each in list order: the IO
// stream moves bytes between tiers, the communication stream runs the collectives and the
// fetches that gather. A side-stream node starts when compute has finished every node listed
// before it, and every other node waits for it before its completion point
// (IoCompletionPoints): a fetch or reduce_scatter before the first reader of its output, a
// collective in place before the next node that touches its value; an offloaded update before
// the completion point of the next such node of its stream in its phase (a stream is in order,
// so that node finishing means it finished too), else at the end of its phase; a write-back the
// same, or earlier, once as many bytes are queued behind it (WriteBackCompletions), so that its
// source's bytes are freed soon; and any of them before the first later node of the other side
// stream that touches one of its values, and before the first later compute node that writes one
// of its values or reads one it writes. The memory plan keeps every value a side-stream node
// reads live until that point.
#include <algorithm>
#include <array>
#include <map>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {

// A ZeRO stage-3 parameter: its home holds only this rank's shard, so compute reads a whole copy
// that its fetch gathers from every rank (Note [zero partition]).
bool Gathered(const Value& v) { return v.role == ValueRole::kParameter && v.shard.has_value(); }

bool HomedOff(const Value& v) {
  return IsPersistent(v.role) && (v.home != MemoryTier::kDevice || Gathered(v));
}

// The bytes of a value's staged copy: the whole value when gathered, else what its home holds.
int64_t StagedBytes(const Value& v) {
  return static_cast<int64_t>(Gathered(v) ? v.type.nbytes() : v.nbytes());
}

// Note [partial channels offloaded]
// An update that trains only the first k channels of a weight (Note [partial channels] in
// graph/ops/channel_ops.cc) has a gradient and optimizer state of the trained channels alone,
// (out, k), back to back, while the weight keeps its whole layout: its trained elements are `rows`
// runs of `prefix` elements every `stride` (ops::UpdateSlice). The offloaded update runs over the
// compact elements, chunk by chunk as for a whole tensor: the gradient's and the state's chunks
// are read as they are, and the parameter's trained elements of the same chunk are gathered run
// by run into a staging buffer and scattered back after the update (TierStore::Operand::run), so
// every chunk's operands line up element for element and the step is bitwise the in-memory one.
// The untrained channels are neither read nor written. Gathering runs needs the parameter in
// memory: a device or host home is read in place; an NVMe home, whose O_DIRECT transfers move
// whole aligned blocks that runs do not fill (and that neighbouring chunks would share), is read
// through a fetched copy instead, written back after the update, as a compute node would.
//
// Under ZeRO stage 3 the same holds of a sharded parameter (Note [zero partition]): its home
// holds a flat range of the whole that cuts rows anywhere, while its gradient and state are
// replicated whole on every rank. Its update reads a gathered copy, updates the trained channels
// of the whole (every rank the same, so the replicated state stays identical), and writes back
// only this rank's shard.
bool UpdatesAParameterCopy(const Graph& graph, const Node& n) {
  if (!IsOptimizerUpdate(n) || ops::UpdateSliceOf(*n.op).whole()) return false;
  const Value& param = graph.value(n.inputs[0]);
  return Gathered(param) ||
         (n.op->kind() == OpKind::kOffloadedUpdate && param.home == MemoryTier::kNvme);
}

bool IsCollective(const Node& n) {
  const OpKind k = n.op->kind();
  return k == OpKind::kAllReduce || k == OpKind::kReduceScatter || k == OpKind::kAllGather;
}

bool Mutates(const Node& n, int slot) {
  const std::vector<int> m = n.op->MutatedInputs();
  return std::find(m.begin(), m.end(), slot) != m.end();
}

bool Touches(const Node& n, ValueId v) {
  return std::find(n.inputs.begin(), n.inputs.end(), v) != n.inputs.end() ||
         std::find(n.outputs.begin(), n.outputs.end(), v) != n.outputs.end();
}

// Steps 1 and 2 of the Note.
void OffloadUpdatesAndSpills(Graph& graph) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  std::vector<bool> folded(nodes.size(), false);  // zero nodes an offloaded update took over
  for (size_t u = 0; u < nodes.size(); ++u) {
    Node& n = nodes[u];
    if (n.op->kind() != OpKind::kAdamWUpdate && n.op->kind() != OpKind::kSgdUpdate) continue;
    // A sharded parameter homed off the device is read at its home too.
    const Value& param = graph.value(n.inputs[0]);
    bool state_off = Gathered(param) && param.home != MemoryTier::kDevice;
    for (size_t i = 2; i < n.inputs.size(); ++i) {
      const Value& v = graph.value(n.inputs[i]);
      state_off = state_off || (v.role == ValueRole::kOptimizerState && HomedOff(v));
    }
    if (!state_off) continue;
    // An accumulator homed off the device and zeroed after the update (with micro-batches) is
    // zeroed by the update itself, chunk by chunk, instead of fetched, zeroed and written back.
    const ValueId grad = n.inputs[1];
    size_t zero = nodes.size();
    if (HomedOff(graph.value(grad))) {
      for (size_t i = u + 1; i < nodes.size() && nodes[i].phase == n.phase; ++i) {
        if (!Touches(nodes[i], grad)) continue;
        if (nodes[i].op->kind() == OpKind::kZero) zero = i;
        break;
      }
    }
    if (zero < nodes.size()) folded[zero] = true;
    n.op = ops::OffloadedUpdateOp(n.op, /*zeroes_gradient=*/zero < nodes.size());
  }
  if (std::find(folded.begin(), folded.end(), true) != folded.end()) {
    std::vector<Node> kept;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (!folded[i]) kept.push_back(std::move(nodes[i]));
    }
    nodes = std::move(kept);
  }
  // Arena values with a home (gradients, block inputs kept for the backward): the arena value
  // stays on the device for its near readers; a kSpilled value holds it at home for the far ones.
  int backward = static_cast<int>(nodes.size());  // the first node that writes a gradient
  for (int i = 0; i < static_cast<int>(nodes.size()) && backward == static_cast<int>(nodes.size());
       ++i) {
    for (ValueId v : nodes[i].outputs) {
      if (v != kNoValue && graph.value(v).role == ValueRole::kGradient) backward = i;
    }
  }
  // The gradients an update reads (whatever their role: a sum of two contributions, for a tied
  // weight, is an activation).
  std::vector<bool> updated_gradient(graph.num_values(), false);
  for (const Node& n : nodes) {
    if (IsOptimizerUpdate(n)) updated_gradient[n.inputs[1]] = true;
  }
  std::map<int, std::vector<Node>> after;  // node index -> write-backs to insert after it
  for (ValueId v = 0; v < graph.num_values(); ++v) {
    Value& value = graph.mutable_value(v);
    if (IsPersistent(value.role) || value.home == MemoryTier::kDevice) continue;
    const bool gradient = updated_gradient[v];
    const MemoryTier home_tier = value.home;
    value.home = MemoryTier::kDevice;
    const TensorType type = value.type;
    const std::string name = value.name.empty() ? absl::StrCat("%", v) : value.name;
    const std::optional<collectives::ShardRange> shard = value.shard;
    const ValueId home = graph.AddValue(type, ValueRole::kSpilled, name);
    graph.mutable_value(home).home = home_tier;
    graph.mutable_value(home).shard = shard;
    // A gradient's far reader is its update; a block input's, every node of the backward.
    auto far = [&](const Node& n, int i) {
      return gradient ? IsOptimizerUpdate(n) && n.inputs[1] == v : i >= backward;
    };
    int last = -1;
    bool spilled = false;
    for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
      Node& n = nodes[i];
      if (far(n, i) && std::find(n.inputs.begin(), n.inputs.end(), v) != n.inputs.end()) {
        std::replace(n.inputs.begin(), n.inputs.end(), v, home);
        spilled = true;
        continue;
      }
      if (Touches(n, v)) last = i;
    }
    if (!spilled || last < 0) continue;
    Node wb;
    wb.op = ops::WriteBackOp();
    wb.inputs = {v, home};
    wb.scope = nodes[last].scope;
    wb.phase = nodes[last].phase;
    after[last].push_back(std::move(wb));
  }
  if (after.empty()) return;
  std::vector<Node> out;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    out.push_back(std::move(nodes[i]));
    if (auto it = after.find(i); it != after.end()) {
      for (Node& wb : it->second) out.push_back(std::move(wb));
    }
  }
  nodes = std::move(out);
}

// Adjacent fetches of gathered parameters in one phase become one fetch node of up to
// `bucket_bytes` (a bucket holds at least one), which the Program runs as one bucketed
// all-gather. Within a run of adjacent fetches, buckets grow: the first holds only the first
// fetch, each next one up to twice the bytes of the one before. A run is the fetches of one
// anchor, in the order of their first use; the step's first run can be the whole prefetch
// lookahead, and one 16 MiB bucket there made the first layer wait for the gathers (and, with
// deferred updates, the NVMe updates) of the next two.
std::vector<Node> BucketGathers(const Graph& graph, std::vector<Node> nodes, int64_t bucket_bytes) {
  auto gathers = [&](const Node& n) {
    return n.op->kind() == OpKind::kFetch && Gathered(graph.value(n.inputs[0]));
  };
  std::vector<Node> out;
  int64_t bytes = 0;  // of the bucket at out.back()
  int64_t limit = 0;  // of the bucket at out.back()
  for (Node& n : nodes) {
    if (gathers(n)) {
      const int64_t b = static_cast<int64_t>(graph.value(n.inputs[0]).type.nbytes());
      const bool run = !out.empty() && gathers(out.back()) && out.back().phase == n.phase;
      if (run && bytes + b <= limit &&
          static_cast<int>(out.back().inputs.size()) < kMaxGatherBucket) {
        out.back().inputs.push_back(n.inputs[0]);
        out.back().outputs.push_back(n.outputs[0]);
        bytes += b;
        continue;
      }
      limit = std::min(bucket_bytes, run ? 2 * bytes : b);
      bytes = b;
    }
    out.push_back(std::move(n));
  }
  return out;
}

struct Use {
  int node;
  int slot;
};

struct Window {
  ValueId value;
  ValueId staged = kNoValue;
  std::vector<Use> uses;
  int64_t bytes = 0;
  int anchor = -1;  // the fetch goes right after this node (-1: before the first node)
  bool writes = false;
};

}  // namespace

absl::Status ScheduleOffload(Graph& graph, int64_t prefetch_bytes, int64_t reuse_bytes,
                             int64_t bucket_bytes) {
  if (prefetch_bytes < 0 || reuse_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("offload: prefetch_bytes = ", prefetch_bytes,
                                                   " and reuse_bytes = ", reuse_bytes,
                                                   " must be >= 0"));
  }
  OffloadUpdatesAndSpills(graph);
  std::vector<Node>& nodes = graph.mutable_nodes();
  const int n = static_cast<int>(nodes.size());

  // Device uses of values homed off the device, per value, in node order.
  std::map<ValueId, std::vector<Use>> uses;
  for (int i = 0; i < n; ++i) {
    const Node& node = nodes[i];
    // IO nodes read homes themselves; a collective sends bytes from memory, so it reads a copy.
    // A partial-channel update of a parameter homed on NVMe or in shards reads a copy of it too
    // (Note [partial channels offloaded]).
    const bool copies_param = UpdatesAParameterCopy(graph, node);
    const bool reads_homes = node.op->RunsOnSideStream() && !IsCollective(node);
    for (int s = 0; s < static_cast<int>(node.inputs.size()); ++s) {
      if (reads_homes && !(s == 0 && copies_param)) continue;
      const Value& value = graph.value(node.inputs[s]);
      // An update of a sharded parameter reads and writes only its shard, at its home.
      if (s == 0 && IsOptimizerUpdate(node) && Gathered(value) && !copies_param) continue;
      if (HomedOff(value)) uses[node.inputs[s]].push_back({i, s});
    }
  }
  if (uses.empty()) return absl::OkStatus();
  // Per node, the staged bytes it needs (each value once), for the window rule.
  std::vector<std::vector<ValueId>> needs(n);
  for (const auto& [v, us] : uses) {
    for (const Use& u : us) {
      if (needs[u.node].empty() || needs[u.node].back() != v) needs[u.node].push_back(v);
    }
  }
  auto io_between = [&](ValueId v, int a, int b) {  // an IO node touching v in (a, b)
    for (int i = a + 1; i < b; ++i) {
      if (nodes[i].op->RunsOnSideStream() && Touches(nodes[i], v)) return true;
    }
    return false;
  };
  auto staged_between = [&](ValueId v, int a, int b) {  // other staged bytes used in (a, b)
    std::vector<ValueId> seen;
    int64_t bytes = 0;
    for (int i = a + 1; i < b && bytes <= prefetch_bytes; ++i) {
      for (ValueId o : needs[i]) {
        if (o == v || std::find(seen.begin(), seen.end(), o) != seen.end()) continue;
        seen.push_back(o);
        bytes += StagedBytes(graph.value(o));
      }
    }
    return bytes;
  };

  std::vector<Window> windows;
  for (const auto& [v, us] : uses) {
    for (const Use& u : us) {
      Window* w = windows.empty() || windows.back().value != v ? nullptr : &windows.back();
      if (w != nullptr) {
        const int prev = w->uses.back().node;
        // A gathered copy with no reuse allowed serves one node only.
        const bool gathered = Gathered(graph.value(v));
        const int64_t reuse = gathered ? reuse_bytes : prefetch_bytes;
        const bool joins = prev == u.node ||
                           ((!gathered || reuse_bytes > 0) &&
                            nodes[prev].phase == nodes[u.node].phase && !io_between(v, prev, u.node) &&
                            staged_between(v, prev, u.node) <= reuse);
        if (!joins) w = nullptr;
      }
      if (w == nullptr) {
        windows.emplace_back();
        w = &windows.back();
        w->value = v;
        w->bytes = StagedBytes(graph.value(v));
      }
      w->uses.push_back(u);
      w->writes = w->writes || Mutates(nodes[u.node], u.slot);
    }
  }
  std::stable_sort(windows.begin(), windows.end(), [](const Window& a, const Window& b) {
    return a.uses.front().node < b.uses.front().node;
  });

  // Anchors: the lookahead rule, then never above an IO node or an earlier window of the value,
  // nor out of the first use's phase.
  std::vector<int> last_end(graph.num_values(), -1);  // per value, last use of its last window
  int64_t between = 0;  // bytes of windows j+1 .. k-1
  int j = -1;
  for (int k = 0; k < static_cast<int>(windows.size()); ++k) {
    Window& w = windows[k];
    const int first = w.uses.front().node;
    while (j + 1 < k && between > prefetch_bytes) {
      ++j;
      between -= windows[j].bytes;
    }
    int anchor = j >= 0 ? windows[j].uses.front().node : -1;
    anchor = std::max(anchor, last_end[w.value]);
    for (int i = first - 1; i > anchor; --i) {
      if (nodes[i].phase != nodes[first].phase ||
          (nodes[i].op->RunsOnSideStream() && Touches(nodes[i], w.value))) {
        anchor = i;
        break;
      }
    }
    w.anchor = std::min(anchor, first - 1);
    last_end[w.value] = w.uses.back().node;
    between += w.bytes;
  }

  // Staged values, rewritten uses, and the new node list.
  std::vector<std::vector<Node>> fetches_after(n + 1), write_backs_after(n + 1);
  for (Window& w : windows) {
    const Value& home = graph.value(w.value);
    const TensorType type = home.type;
    const std::string name = home.name.empty() ? absl::StrCat("%", w.value) : home.name;
    const MemoryTier tier = home.home;
    const bool gathered = Gathered(home);
    const std::optional<collectives::ShardRange> shard = home.shard;
    w.staged = graph.AddValue(type, ValueRole::kStaged,
                              absl::StrCat(name, gathered ? " (gathered, shard from " : " (from ",
                                           MemoryTierName(tier), ")"));
    if (!gathered) graph.mutable_value(w.staged).shard = shard;  // a copy of the shard it holds
    for (const Use& u : w.uses) nodes[u.node].inputs[u.slot] = w.staged;
    const int first = w.uses.front().node, last = w.uses.back().node;
    Node fetch;
    fetch.op = ops::FetchOp();
    fetch.inputs = {w.value};
    fetch.outputs = {w.staged};
    fetch.scope = nodes[first].scope;
    fetch.phase = nodes[first].phase;
    fetches_after[w.anchor + 1].push_back(std::move(fetch));
    if (w.writes) {
      Node wb;
      wb.op = ops::WriteBackOp();
      wb.inputs = {w.staged, w.value};
      wb.scope = nodes[last].scope;
      wb.phase = nodes[last].phase;
      write_backs_after[last + 1].push_back(std::move(wb));
    }
  }
  std::vector<Node> out;
  auto emit = [&](int slot) {
    for (Node& wb : write_backs_after[slot]) out.push_back(std::move(wb));
    for (Node& f : fetches_after[slot]) out.push_back(std::move(f));
  };
  emit(0);
  for (int i = 0; i < n; ++i) {
    out.push_back(std::move(nodes[i]));
    emit(i + 1);
  }
  nodes = BucketGathers(graph, std::move(out), bucket_bytes);
  return absl::OkStatus();
}

StreamKind StreamOf(const Graph& graph, const Node& node) {
  if (!node.op->RunsOnSideStream()) return StreamKind::kCompute;
  if (IsCollective(node)) return StreamKind::kComm;
  if (node.op->kind() == OpKind::kFetch) {
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (graph.value(node.inputs[i]).shard && !graph.value(node.outputs[i]).shard) {
        return StreamKind::kComm;
      }
    }
  }
  return StreamKind::kIo;
}

// A write-back's source is freed once it is done, so it should be done soon; but a stream runs
// in order, so waiting for a small write-back also waits for the big one before it. The
// write-backs of one node's outputs form a group (a gradient and its bias's, read by the norm
// between them); a write-back is done before the node after the stream node by which the later
// groups' write-backs hold as many bytes as its own group. Then a gradient's write-back overlaps
// the computation of the next gradient instead of the elementwise node after its producer, and a
// run of write-backs with no fetch after them (spilled block inputs in the forward) does not keep
// every source live to the end of the phase. Where the later write-backs hold fewer bytes (the
// last of a run), it is done before the node after the next node of its stream. Other nodes
// get n.
std::vector<int> WriteBackCompletions(const Graph& graph, const std::vector<int>& stream,
                                      const std::vector<int>& phase_end) {
  const std::vector<Node>& nodes = graph.nodes();
  const int n = static_cast<int>(nodes.size());
  std::vector<int> producer(graph.num_values(), -1);
  for (int i = 0; i < n; ++i) {
    for (ValueId v : nodes[i].outputs) {
      if (v != kNoValue) producer[v] = i;
    }
  }
  auto is_write_back = [&](int i) { return nodes[i].op->kind() == OpKind::kWriteBack; };
  auto group = [&](int i) { return is_write_back(i) ? producer[nodes[i].inputs[0]] : -2 - i; };
  auto bytes = [&](int i) {
    return is_write_back(i) ? static_cast<int64_t>(graph.value(nodes[i].inputs[0]).nbytes()) : 0;
  };
  std::map<int, int64_t> group_bytes;
  for (int i = 0; i < n; ++i) {
    if (stream[i] >= 0 && is_write_back(i)) group_bytes[group(i)] += bytes(i);
  }
  std::vector<int> done(n, n);
  for (int i = 0; i < n; ++i) {
    if (stream[i] < 0 || !is_write_back(i)) continue;
    done[i] = phase_end[i];
    int next = -1;  // the next node of the stream
    int64_t behind = 0;
    for (int j = i + 1; j < phase_end[i]; ++j) {
      if (stream[j] != stream[i]) continue;
      if (next < 0) next = j;
      if (group(j) == group(i)) continue;
      behind += bytes(j);
      if (behind >= group_bytes[group(i)]) {
        done[i] = j + 1;
        break;
      }
    }
    if (done[i] == phase_end[i] && next >= 0) done[i] = next + 1;
  }
  return done;
}

std::vector<int> IoCompletionPoints(const Graph& graph) {
  const std::vector<Node>& nodes = graph.nodes();
  const int n = static_cast<int>(nodes.size());
  std::vector<int> done(n, -1), stream(n);
  for (int i = 0; i < n; ++i) stream[i] = static_cast<int>(StreamOf(graph, nodes[i]));
  // The end of each node's phase: the index of the first node of a later phase, or n.
  std::vector<int> phase_end(n, n);
  for (int i = n - 2; i >= 0; --i) {
    phase_end[i] = nodes[i + 1].phase != nodes[i].phase ? i + 1 : phase_end[i + 1];
  }
  // A fetch or reduce_scatter before the first reader of its output; an all_reduce or
  // all_gather (in place) before the next node that touches its value.
  auto produces = [](const Node& n) {
    return n.op->kind() == OpKind::kFetch || n.op->kind() == OpKind::kReduceScatter;
  };
  auto awaited = [&](const Node& n) { return produces(n) || IsCollective(n); };
  for (int i = 0; i < n; ++i) {
    if (stream[i] < 0 || !awaited(nodes[i])) continue;
    const bool output = produces(nodes[i]);
    // A bucket of fetches is done before the first reader of any of its copies.
    auto reads_output = [&](const Node& k) {
      for (ValueId v : nodes[i].outputs) {
        if (std::find(k.inputs.begin(), k.inputs.end(), v) != k.inputs.end()) return true;
      }
      return false;
    };
    // In place: any of its values (a bucketed all_reduce has several).
    auto touches_input = [&](const Node& k) {
      return std::any_of(nodes[i].inputs.begin(), nodes[i].inputs.end(),
                         [&](ValueId v) { return Touches(k, v); });
    };
    done[i] = phase_end[i];
    for (int k = i + 1; k < phase_end[i]; ++k) {
      if (output ? reads_output(nodes[k]) : touches_input(nodes[k])) {
        done[i] = k;
        break;
      }
    }
  }
  // Scanning backwards, per stream: the earliest completion point of a later awaited node (a
  // stream runs in order, so a node is done when a later one is).
  const std::vector<int> write_back_done = WriteBackCompletions(graph, stream, phase_end);
  std::array<int, kNumSideStreams> next_fetch_done;
  next_fetch_done.fill(n);
  for (int i = n - 1; i >= 0; --i) {
    if (i + 1 < n && nodes[i + 1].phase != nodes[i].phase) next_fetch_done.fill(phase_end[i]);
    const int s = stream[i];
    if (s < 0) continue;
    if (awaited(nodes[i])) {
      next_fetch_done[s] = std::min(next_fetch_done[s], done[i]);
    } else if (nodes[i].op->kind() == OpKind::kWriteBack) {
      done[i] = std::min(next_fetch_done[s], write_back_done[i]);
    } else {
      done[i] = next_fetch_done[s];
    }
  }
  // Across the side streams: a node is done before the first later node of the other stream
  // that touches one of its values, so that neither reads what the other has not finished
  // writing nor writes what the other still reads (a reduce_scatter before the offloaded update
  // of its shard, an update before the all_gather of the parameter it wrote).
  auto shares_value = [](const Node& a, const Node& b) {
    for (const auto* vs : {&a.inputs, &a.outputs}) {
      for (ValueId v : *vs) {
        if (v != kNoValue && Touches(b, v)) return true;
      }
    }
    return false;
  };
  // Compute nodes only conflict where one of the two writes what the other touches (an offloaded
  // update that reads a gradient accumulator on the device is done before the zero node after it;
  // a gradient's write-back is not waited for by the norm that reads the same gradient).
  auto writes_shared = [&](const Node& a, const Node& b) {
    auto writes = [](const Node& w, const Node& t) {
      for (ValueId v : w.outputs) {
        if (v != kNoValue && Touches(t, v)) return true;
      }
      for (int slot : w.op->MutatedInputs()) {
        if (Touches(t, w.inputs[slot])) return true;
      }
      return false;
    };
    return writes(a, b) || writes(b, a);
  };
  for (int i = 0; i < n; ++i) {
    if (stream[i] < 0) continue;
    for (int k = i + 1; k < std::min(done[i], phase_end[i]); ++k) {
      const bool other_side = stream[k] >= 0 && stream[k] != stream[i];
      if ((other_side && shares_value(nodes[i], nodes[k])) ||
          (stream[k] < 0 && writes_shared(nodes[i], nodes[k]))) {
        done[i] = k;
        break;
      }
    }
  }
  return done;
}

}  // namespace strata::graph
