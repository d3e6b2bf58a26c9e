#include <algorithm>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {
int64_t Align(int64_t n) { return (n + kPlanAlignment - 1) / kPlanAlignment * kPlanAlignment; }
}  // namespace

int64_t NvmeExtentBytes(int64_t bytes) {
  return (bytes + offload::kIoBlockAlignment - 1) / offload::kIoBlockAlignment *
         offload::kIoBlockAlignment;
}

absl::StatusOr<MemoryPlan> PlanMemory(Graph& graph, int num_threads) {
  std::vector<Node>& nodes = graph.mutable_nodes();
  for (Node& n : nodes) {
    std::vector<TensorType> in;
    for (ValueId v : n.inputs) in.push_back(graph.value(v).type);
    const size_t bytes = n.op->WorkspaceBytes(in, num_threads);
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

  // Arena values: greedy by size (largest first), lowest fitting offset.
  std::vector<ValueId> arena;
  for (ValueId v = 0; v < num_values; ++v) {
    if (!IsPersistent(graph.value(v).role) && used[v]) arena.push_back(v);
  }
  std::stable_sort(arena.begin(), arena.end(), [&](ValueId a, ValueId b) {
    return graph.value(a).nbytes() > graph.value(b).nbytes();
  });
  std::vector<ValueId> placed;
  for (ValueId v : arena) {
    const int64_t size = Align(static_cast<int64_t>(graph.value(v).nbytes()));
    const auto [first, last] = plan.live[v];
    std::vector<std::pair<int64_t, int64_t>> busy;  // [begin, end) of overlapping live values
    for (ValueId p : placed) {
      const auto [pf, pl] = plan.live[p];
      if (pf <= last && first <= pl) {
        busy.push_back({plan.offset[p], plan.offset[p] + Align(graph.value(p).nbytes())});
      }
    }
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (const auto& [b, e] : busy) {
      if (offset + size <= b) break;
      offset = std::max(offset, e);
    }
    plan.offset[v] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
    placed.push_back(v);
  }

  std::vector<int64_t> live_bytes(nodes.size() + 1, 0);
  for (ValueId v : arena) {
    for (int i = plan.live[v].first; i <= plan.live[v].second; ++i) {
      live_bytes[i] += Align(graph.value(v).nbytes());
    }
  }
  plan.live_peak_bytes = *std::max_element(live_bytes.begin(), live_bytes.end());
  return plan;
}

}  // namespace strata::graph
