// Compile passes: each is a small function over the Graph with its own test (DESIGN.md, "The
// compile pipeline", 4). Compile runs them in this order and can print the IR after each.
//
//   HoistChannelSlices the channel_slice nodes of partial-channel weight gradients move into the
//                      forward, so that it keeps only those channels (Note [partial channels])
//   SyncBatchNorm      (data parallel, world > 1) training batch_norm and its gradient split around
//                      all_reduce nodes, so the statistics are the global batch's
//   FuseCrossEntropy   cross_entropy + its gradient -> one cross_entropy_with_grad node
//   FuseResidualAdd    add(linear(x, w, b), r) -> one linear_residual node (r + x w^T + b), and
//                      add(layer_norm_grad.dx, g) -> one layer_norm_grad_residual node
//   PartitionForZero   (TrainOptions::zero, stages 1-3) reduce-scatter gradients, shard optimizer
//                      state and, at stage 3, parameters (Note [zero partition])
//   BucketAllReduces   (data parallel) the all_reduces of small gradients merged into buckets
//                      (Note [bucketed all-reduces])
//   RecomputeActivations  (TrainOptions::recompute) checkpointed blocks keep only their input and
//                      output through the forward; the rest is recomputed in the backward
//   ApplyMixedPrecision (TrainOptions::precision bf16 or f16) parameters read through working
//                      copies, activations and their gradients stored in the working precision
//                      (Note [mixed precision])
//   ScheduleUpdates    each optimizer update right after its gradient is final
//   EliminateDeadCode  drops nodes whose outputs nobody reads and that write nothing in place
//   PlaceState         a home tier for every persistent value (Note [home tiers])
//   ScheduleOffload    fetch / write-back / offloaded-update nodes (Note [the offload schedule])
//   PlanMemory         liveness -> offsets in one arena, plus the persistent region per tier
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "graph/ir.h"
#include "graph/offload_options.h"
#include "graph/op.h"
#include "graph/zero_options.h"

namespace strata::graph {

// Per value: how many node inputs read it (a node reading it twice counts twice), and the node
// that writes it (-1: none), for the passes that rewrite a producer and its single reader.
struct ValueUses {
  std::vector<int> readers;
  std::vector<int> producer;
};
ValueUses CountUses(const Graph& graph);

// Run right after autodiff; `forward_nodes`: how many nodes the traced forward had.
absl::Status HoistChannelSlices(Graph& graph, int forward_nodes);
// Note [synchronized batch norm] in sync_batch_norm.cc. Run right after autodiff; a no-op when
// world == 1.
absl::Status SyncBatchNorm(Graph& graph, int rank, int world);
absl::Status FuseCrossEntropy(Graph& graph);
// Note [zero partition] in zero_partition.cc: this rank's (`rank` of `world_size`) shards. A
// no-op at stage 0 or in a world of one.
absl::Status PartitionForZero(Graph& graph, const ZeroOptions& zero, int rank, int world_size);
// Note [bucketed all-reduces] in bucket_all_reduces.cc: the all_reduce nodes of gradients of
// fewer than `small_elements` elements, merged into nodes of up to `bucket_bytes` (0: none).
absl::Status BucketAllReduces(Graph& graph, int64_t small_elements, int64_t bucket_bytes);
absl::Status FuseResidualAdd(Graph& graph);
// Note [row sums of a linear gradient] in fold_row_sums.cc. f32 steps only.
absl::Status FoldRowSumsIntoLinearGrad(Graph& graph);
// Note [relu masks] in save_relu_masks.cc: relu and relu6 gradients from a u8 mask of x. f32
// steps only.
absl::Status SaveReluMasks(Graph& graph);
// Note [activation checkpointing] in recompute.cc. A no-op when no node is in a block.
absl::Status RecomputeActivations(Graph& graph);
// Note [mixed precision] in mixed_precision.cc. A no-op for f32; `loss` stays f32. Run before
// ScheduleUpdates (it tells compute from update-phase nodes by their phase).
absl::Status ApplyMixedPrecision(Graph& graph, DType precision, ValueId loss);
absl::Status ScheduleUpdates(Graph& graph);
absl::Status EliminateDeadCode(Graph& graph);
absl::Status PlaceState(Graph& graph, const OffloadOptions& options);
// `reuse_bytes`: the window rule's bound for parameters gathered by ZeRO stage 3
// (ZeroOptions::reuse_bytes); other values use `prefetch_bytes`. `bucket_bytes`: adjacent
// fetches of gathered parameters merge into one fetch node of up to that many bytes.
absl::Status ScheduleOffload(Graph& graph, int64_t prefetch_bytes, int64_t reuse_bytes = 0,
                             int64_t bucket_bytes = 0);
inline constexpr int kMaxGatherBucket = 64;  // tensors per bucket, whatever their bytes

// adamw_update, sgd_update or offloaded_update: inputs (param, grad, state..., [global norm]).
bool IsOptimizerUpdate(const Node& n);
// The stream a node runs on (graph/streams.h): compute on the calling thread; moves between
// tiers and offloaded updates on the IO stream; collectives, and the fetches that gather a ZeRO
// stage-3 parameter, on the communication stream, in node order (the same on every rank).
enum class StreamKind { kCompute = -1, kIo = 0, kComm = 1 };
inline constexpr int kNumSideStreams = 2;
StreamKind StreamOf(const Graph& graph, const Node& node);
// Per node, for the nodes that run on a side stream: the index of the node before which every
// other node (compute, or the other side stream's) waits for it to finish (nodes.size() for the
// end of the step); -1 for compute nodes.
std::vector<int> IoCompletionPoints(const Graph& graph);

// Note [deferred updates] (defer_updates.cc). The offloaded updates among the optimizer updates
// that end `entries` (node indices in run order) that can run inside the next step, in order:
// each one that no later update left in the step touches; `norm` is the global gradient norm the
// updates read (kNoValue without clipping).
std::vector<int> DeferredUpdates(const Graph& graph, const std::vector<int>& entries, ValueId norm);
struct DeferredSequence {
  std::vector<int> entries;    // `body` with the deferred nodes inserted
  // Per deferred node: the first node off the IO stream that must wait for it, or -1; and
  // whether that node alone waits (a gather on the communication stream, when no compute node
  // touches the deferred node's values) rather than it and every node listed after it.
  std::vector<int> completion;
  std::vector<bool> binds_one_node;
  // Per deferred node: the fetch right after it that reads the parameter it updates, which it
  // hands the new parameter (Note [handing the parameter over]), and that fetch's input; or -1.
  std::vector<int> hands_to;
  std::vector<int> hands_input;
};
// `body` (the next step's nodes) with each node of `tail` placed before the first body node that
// touches one of its values.
DeferredSequence InterleaveDeferred(const Graph& graph, const std::vector<int>& tail,
                                    const std::vector<int>& body, ValueId norm);

inline constexpr int64_t kPlanAlignment = 64;

// Where every value lives. Transient values (activations, gradients, workspaces) share one arena
// by liveness over the node order (a value is live from the node that writes it to the last node
// that reads it); persistent values (parameters, optimizer state, inputs, outputs) each get their
// own bytes in a second region.
struct MemoryPlan {
  std::vector<int64_t> offset;  // per value, in its region; -1 when the value is unused
  int64_t arena_bytes = 0;
  int64_t persistent_bytes = 0;  // persistent values homed on the device
  int64_t host_bytes = 0;        // persistent values homed on the host (their own region)
  int64_t nvme_bytes = 0;        // extents of the values homed on NVMe (NvmeExtentBytes each)
  // Live interval [first, last] node index of each arena value (-1, -1 otherwise).
  std::vector<std::pair<int, int>> live;
  // Largest sum of live arena bytes at any node: a lower bound no plan can beat.
  int64_t live_peak_bytes = 0;
  // Per value: the input whose bytes it takes over at the node that writes it (Note [in-place
  // outputs] in memory_plan.cc), or kNoValue.
  std::vector<ValueId> alias;
};

// The bytes of the swap-file extent that holds `bytes`: whole 4 KiB blocks.
int64_t NvmeExtentBytes(int64_t bytes);

// Adds a kWorkspace value for each node whose op needs scratch (sized for `target`), then
// assigns offsets so that no two values live at the same node share bytes, letting an output
// take over the bytes of an input that dies at its node where the op allows (Note [in-place
// outputs] in memory_plan.cc); of several greedy placements, the smallest arena is kept.
absl::StatusOr<MemoryPlan> PlanMemory(Graph& graph, const StepTarget& target);

}  // namespace strata::graph
