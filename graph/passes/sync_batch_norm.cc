// Note [synchronized batch norm]
// In a data-parallel step (Note [data parallel] in graph/compile.cc) each of the W ranks holds
// N of the global batch's W * N rows. A training batch_norm normalizes each channel with the
// mean and variance of its values; for the step to be the one-process step, those must be the
// statistics of all W * N * H * W values, as PyTorch's nn.SyncBatchNorm takes them. Collectives
// run only on the Program's communication stream, in node order (the same on every rank), so no compute op
// talks to the communicator; instead this pass splits every training batch_norm node and its
// gradient around an all_reduce node:
//
//   forward   stats = batch_norm_stats(x)                 this rank's mean m_r and variance v_r
//             all_reduce(stats)                            -> every rank's (exact: see below)
//             y, mean, rstd = batch_norm_synced(x, gamma, beta, rm, rv, stats)
//                 mean = (1/W) sum_r m_r, var = (1/W) sum_r (v_r + (m_r - mean)^2)
//                 (Chan's merge for equal counts), rstd = 1 / sqrt(var + eps); the running
//                 statistics move towards mean and the unbiased var * M / (M - 1), M = W N H W
//   backward  dgamma, dbeta, g = batch_norm_grad_stats(x, mean, rstd, dy)
//                 g: this rank's sum dy and sum dy (x - mean); dgamma, dbeta: its shares
//             all_reduce(g)
//             dx = batch_norm_grad_synced(x, gamma, mean, rstd, dy, g)
//                 dx = gamma rstd (dy - S1 / M - (x - mean) rstd^2 S2 / M), S1 and S2 the
//                 sums over the ranks
//
// The seed: each rank's loss is the mean over its N rows and its backward is seeded with
// 1 / (micro_batches * W), so its dy is exactly the one-process run's dy of those rows (whose
// loss is the mean over W N rows, seeded with 1 / micro_batches). S1 and S2 are then the
// one-process sums, dx its rows of the one-process dx, and dgamma, dbeta, summed over the ranks
// by the gradients' all_reduce, its dgamma and dbeta. With micro-batches the statistics are those
// of micro-batch i of every rank, i.e. of the one-process micro-batch i when each rank holds its
// share of every micro-batch (strata-gpt's and strata-fmnist's RankRows).
//
// The all_reduced buffers are (W, 4, C): each rank writes its values, in double as two floats,
// into its own row of zeros, so the sum is an exact all-gather and the merge runs in double in
// rank order, bit-identical on every rank (Note [exact sums over the ranks] in
// runtime/cpu/sync_batchnorm.h). A rank computes on its rows only; the statistics cost one small
// all_reduce per layer each way.
//
// Recompute (graph/passes/recompute.cc) copies batch_norm_synced without its running-statistics
// update and keeps the all_reduced stats from the forward (a value written in place by a node it
// does not copy is kept), so the copy issues no collective and computes the same bytes.
// Evaluation (Program::Evaluate) normalizes with the running statistics, identical on every rank
// (they are replicated buffers, saved once in a checkpoint), and runs no all_reduce: it has no
// output the loss needs.
#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "runtime/status.h"

namespace strata::graph {
namespace {

// The node's output types must be what its op infers from its inputs.
absl::Status Check(const Graph& graph, const Node& n) {
  std::vector<TensorType> in;
  for (ValueId v : n.inputs) in.push_back(graph.value(v).type);
  STRATA_ASSIGN_OR_RETURN(const std::vector<TensorType> out, n.op->Infer(in));
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    if (n.outputs[i] != kNoValue && (i >= out.size() || graph.value(n.outputs[i]).type != out[i])) {
      return absl::InternalError(absl::StrCat("sync_batch_norm: ", n.op->name(), " output ", i,
                                              " is ", graph.value(n.outputs[i]).type.ToString()));
    }
  }
  return absl::OkStatus();
}

Node Like(const Node& n, std::shared_ptr<const Op> op, std::vector<ValueId> inputs,
          std::vector<ValueId> outputs) {
  Node m = n;  // scope, phase and block
  m.op = std::move(op);
  m.inputs = std::move(inputs);
  m.outputs = std::move(outputs);
  return m;
}

TensorType StatsType(const Graph& graph, ValueId x, int world) {
  return {Shape{world, 4, graph.value(x).type.shape[1]}, DType::kF32};
}

}  // namespace

absl::Status SyncBatchNorm(Graph& graph, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) {
    return absl::InvalidArgumentError(
        absl::StrCat("sync_batch_norm: rank ", rank, " of a world of ", world));
  }
  if (world == 1) return absl::OkStatus();
  std::vector<Node> old = std::move(graph.mutable_nodes());
  std::vector<Node> out;
  out.reserve(old.size());
  for (Node& n : old) {
    const OpKind kind = n.op->kind();
    if (kind == OpKind::kBatchNorm) {
      // (x, gamma, beta, running_mean, running_var) -> (y, save_mean, save_rstd)
      std::shared_ptr<const Op> synced = ops::BatchNormSyncedOp(*n.op);
      if (synced == nullptr) {
        return absl::InternalError(absl::StrCat("sync_batch_norm: ", n.op->name(), " in ",
                                                n.scope, " is not a batch_norm op"));
      }
      const ValueId x = n.inputs[0];
      const ValueId stats =
          graph.AddValue(StatsType(graph, x, world), ValueRole::kActivation, "batch_stats");
      std::vector<ValueId> in = n.inputs;
      in.push_back(stats);
      out.push_back(Like(n, ops::BatchNormStatsOp(rank, world), {x}, {stats}));
      out.push_back(Like(n, ops::AllReduceOp(), {stats}, {}));
      out.push_back(Like(n, std::move(synced), std::move(in), n.outputs));
    } else if (kind == OpKind::kBatchNormGrad) {
      // (x, gamma, save_mean, save_rstd, dy) -> (dx, dgamma, dbeta)
      const ValueId x = n.inputs[0], gamma = n.inputs[1], mean = n.inputs[2], rstd = n.inputs[3],
                    dy = n.inputs[4];
      const ValueId dx = n.outputs[0], dgamma = n.outputs[1], dbeta = n.outputs[2];
      // Without dx (nothing below needs a gradient) the sums over the ranks are not needed:
      // the gradients' all_reduce adds up dgamma and dbeta.
      const ValueId sums = dx == kNoValue ? kNoValue
                                          : graph.AddValue(StatsType(graph, x, world),
                                                           ValueRole::kGradient, "batch_grad_stats");
      out.push_back(Like(n, ops::BatchNormGradStatsOp(rank, world), {x, mean, rstd, dy},
                         {dgamma, dbeta, sums}));
      if (dx != kNoValue) {
        out.push_back(Like(n, ops::AllReduceOp(), {sums}, {}));
        out.push_back(Like(n, ops::BatchNormGradSyncedOp(), {x, gamma, mean, rstd, dy, sums}, {dx}));
      }
    } else {
      out.push_back(std::move(n));
    }
  }
  for (const Node& n : out) {
    const OpKind k = n.op->kind();
    if (k == OpKind::kBatchNormStats || k == OpKind::kBatchNormSynced ||
        k == OpKind::kBatchNormGradStats || k == OpKind::kBatchNormGradSynced) {
      STRATA_RETURN_IF_ERROR(Check(graph, n));
    }
  }
  graph.mutable_nodes() = std::move(out);
  return absl::OkStatus();
}

}  // namespace strata::graph
