#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {
int64_t Align(int64_t n) { return (n + kPlanAlignment - 1) / kPlanAlignment * kPlanAlignment; }

bool Transient(ValueRole r) { return r == ValueRole::kActivation || r == ValueRole::kGradient; }

// Note [in-place outputs]
// A node that reads a value for the last time and writes an output of the same size may write the
// output over it, where its op allows (Op::InPlaceOutputs: elementwise ops, and a linear gradient
// whose dx overwrites x after dw has read it): the two never need separate bytes. In a transformer
// block's backward this takes the largest transient off the peak: the MLP's (B, T, 4C) input and
// its gradient, and the GELU gradient's input and output, no longer coexist. Only compute nodes
// and plain transient values (activations, gradients) qualify: a value a side stream reads, or a
// staged or spilled copy, keeps its own bytes. The output joins the input's group: the group is
// placed once, over the union of its members' intervals, and each member keeps its own interval
// (what check_plan and the IO waits see); the live-set accounting counts the output from the
// node after the one that writes it.
std::vector<ValueId> InPlaceAliases(const Graph& graph, const MemoryPlan& plan) {
  const std::vector<Node>& nodes = graph.nodes();
  std::vector<ValueId> alias(graph.num_values(), kNoValue);
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    const Node& n = nodes[i];
    if (StreamOf(graph, n) != StreamKind::kCompute) continue;
    std::vector<ValueId> taken;
    for (const auto& [o, slot] : n.op->InPlaceOutputs()) {
      if (o >= static_cast<int>(n.outputs.size()) || slot >= static_cast<int>(n.inputs.size())) {
        continue;
      }
      const ValueId out = n.outputs[o], in = n.inputs[slot];
      if (out == kNoValue || alias[out] != kNoValue || plan.live[out].first != i ||
          plan.live[in].second != i || plan.live[in].first < 0 ||
          std::find(taken.begin(), taken.end(), in) != taken.end()) {
        continue;
      }
      const Value &a = graph.value(out), &b = graph.value(in);
      if (!Transient(a.role) || !Transient(b.role) || a.nbytes() != b.nbytes()) continue;
      // The input must not be read twice by this node under another slot that is written first.
      if (std::count(n.inputs.begin(), n.inputs.end(), in) != 1) continue;
      alias[out] = in;
      taken.push_back(in);
    }
  }
  return alias;
}

// Places `order`'s values one by one where they overlap no placed value live at the same time:
// at the lowest such offset (first fit), or in the smallest gap between placed values that holds
// them (best fit, else above them all); returns the bytes the placement spans.
template <typename Bytes>
int64_t Place(const std::vector<ValueId>& order, const std::vector<std::pair<int, int>>& span,
              const Bytes& bytes, bool best_fit, std::vector<int64_t>& offset) {
  int64_t total = 0;
  std::vector<ValueId> placed;
  std::vector<std::pair<int64_t, int64_t>> busy;  // [begin, end) of overlapping placed values
  for (ValueId v : order) {
    const int64_t size = bytes(v);
    const auto [first, last] = span[v];
    busy.clear();
    for (ValueId p : placed) {
      if (span[p].first <= last && first <= span[p].second) {
        busy.push_back({offset[p], offset[p] + bytes(p)});
      }
    }
    std::sort(busy.begin(), busy.end());
    int64_t at = -1, best_gap = 0, end = 0;  // end: the top of the busy values seen so far
    for (const auto& [b, e] : busy) {
      const int64_t gap = b - end;
      if (gap >= size && (at < 0 || (best_fit && gap < best_gap))) {
        at = end;
        best_gap = gap;
        if (!best_fit) break;
      }
      end = std::max(end, e);
    }
    if (at < 0) at = end;
    offset[v] = at;
    total = std::max(total, at + size);
    placed.push_back(v);
  }
  return total;
}

}  // namespace

int64_t NvmeExtentBytes(int64_t bytes) {
  return (bytes + offload::kIoBlockAlignment - 1) / offload::kIoBlockAlignment *
         offload::kIoBlockAlignment;
}

absl::StatusOr<MemoryPlan> PlanMemory(Graph& graph, const StepTarget& target) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  for (Node& n : nodes) {
    std::vector<TensorType> in;
    for (ValueId v : n.inputs) in.push_back(graph.value(v).type);
    const size_t bytes = n.op->WorkspaceBytes(in, target);
    n.workspace = kNoValue;
    if (bytes > 0) {
      const int64_t floats = static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float));
      n.workspace = graph.AddValue({Shape{floats}, DType::kF32}, ValueRole::kWorkspace,
                                   absl::StrCat("workspace of ", n.op->name()));
    }
  }

  MemoryPlan plan;
  const int num_values = graph.num_values();
  plan.offset.assign(num_values, -1);
  plan.live.assign(num_values, {-1, -1});
  std::vector<bool> used(num_values, false);
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    const Node& n = nodes[i];
    auto touch = [&](ValueId v) {
      if (v == kNoValue) return;
      used[v] = true;
      auto& [first, last] = plan.live[v];
      if (first < 0) first = i;
      last = i;
    };
    for (ValueId v : n.outputs) touch(v);
    for (ValueId v : n.inputs) touch(v);
    touch(n.workspace);
  }
  // A value an IO node reads stays live until compute has waited for that node (Note [the
  // offload schedule]); before then its bytes may still be read.
  const std::vector<int> io_done = IoCompletionPoints(graph);
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (io_done[i] < 0) continue;
    for (ValueId v : nodes[i].inputs) {
      if (IsPersistent(graph.value(v).role)) continue;
      plan.live[v].second = std::max(plan.live[v].second, io_done[i] - 1);
    }
  }

  // Persistent values: one after another in their home tier's region, in id order (parameters
  // in model order). NVMe extents are whole 4 KiB blocks, as O_DIRECT reads and writes them.
  for (ValueId v = 0; v < num_values; ++v) {
    const Value& value = graph.value(v);
    if (!IsPersistent(value.role)) continue;
    // Inputs, parameters and outputs keep their bytes even if no node reads them, so that the
    // caller can feed, load and read them.
    if (!used[v] && (value.role == ValueRole::kOptimizerState ||
                     value.role == ValueRole::kSpilled)) {
      continue;
    }
    const int64_t bytes = static_cast<int64_t>(value.nbytes());
    int64_t& region = value.home == MemoryTier::kHost   ? plan.host_bytes
                      : value.home == MemoryTier::kNvme ? plan.nvme_bytes
                                                        : plan.persistent_bytes;
    plan.offset[v] = region;
    region += value.home == MemoryTier::kNvme ? NvmeExtentBytes(bytes) : Align(bytes);
    plan.live[v] = {-1, -1};
  }

  // Arena values: each at an offset where it overlaps no value live at the same time (below); a
  // group of in-place outputs (Note [in-place outputs]) is placed once, at its first member,
  // over all its members' intervals.
  plan.alias = InPlaceAliases(graph, plan);
  std::vector<ValueId> root(num_values);
  std::vector<std::pair<int, int>> span(plan.live);
  for (ValueId v = 0; v < num_values; ++v) {
    for (root[v] = v; plan.alias[root[v]] != kNoValue;) root[v] = plan.alias[root[v]];
    if (root[v] != v) span[root[v]].second = std::max(span[root[v]].second, plan.live[v].second);
  }
  std::vector<ValueId> arena;
  for (ValueId v = 0; v < num_values; ++v) {
    if (!IsPersistent(graph.value(v).role) && used[v] && root[v] == v) arena.push_back(v);
  }
  auto bytes = [&](ValueId v) { return Align(static_cast<int64_t>(graph.value(v).nbytes())); };
  auto duration = [&](ValueId v) { return int64_t{span[v].second - span[v].first + 1}; };
  // Four orders (largest first; longest-lived first, their bytes being the hardest to share;
  // largest bytes x lifetime first; earliest first), each placed first fit and best fit, the
  // smallest arena kept: none is best for every graph. At the README's GPT (6 layers, width 384,
  // T 256, batch 8) fine-tuning its last block, the largest-first first fit of earlier versions
  // spans 82.2 MiB, earliest-first best fit 80.6 MiB, against a largest live set of 80.2 MiB.
  // Each pass is O(values^2).
  const std::vector<std::function<bool(ValueId, ValueId)>> orders = {
      [&](ValueId x, ValueId y) { return bytes(x) > bytes(y); },
      [&](ValueId x, ValueId y) {
        return duration(x) != duration(y) ? duration(x) > duration(y) : bytes(x) > bytes(y);
      },
      [&](ValueId x, ValueId y) { return bytes(x) * duration(x) > bytes(y) * duration(y); },
      [&](ValueId x, ValueId y) {
        return span[x].first != span[y].first ? span[x].first < span[y].first : bytes(x) > bytes(y);
      },
  };
  plan.arena_bytes = -1;
  for (const auto& order : orders) {
    std::stable_sort(arena.begin(), arena.end(), order);
    for (bool best_fit : {false, true}) {
      std::vector<int64_t> offset(num_values, -1);
      const int64_t total = Place(arena, span, bytes, best_fit, offset);
      if (plan.arena_bytes >= 0 && total >= plan.arena_bytes) continue;
      plan.arena_bytes = total;
      for (ValueId v : arena) plan.offset[v] = offset[v];
    }
  }
  plan.arena_bytes = std::max<int64_t>(plan.arena_bytes, 0);
  for (ValueId v = 0; v < num_values; ++v) {
    if (root[v] != v) plan.offset[v] = plan.offset[root[v]];
  }

  std::vector<int64_t> live_bytes(nodes.size() + 1, 0);
  for (ValueId v = 0; v < num_values; ++v) {
    if (IsPersistent(graph.value(v).role) || !used[v]) continue;
    // An in-place output shares its first node with the input it overwrites.
    const int from = plan.live[v].first + (plan.alias[v] != kNoValue ? 1 : 0);
    for (int i = from; i <= plan.live[v].second; ++i) {
      live_bytes[i] += Align(graph.value(v).nbytes());
    }
  }
  plan.live_peak_bytes = *std::max_element(live_bytes.begin(), live_bytes.end());
  return plan;
}

}  // namespace strata::graph
