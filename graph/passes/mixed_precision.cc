// Note [mixed precision]
// A mixed-precision step keeps the model's state in f32 and computes with values stored in a
// working precision, bf16 or f16 (TrainOptions::precision), as PyTorch's autocast with f32
// master weights and NVIDIA's AMP do. This pass decides *which values are stored in the working
// precision*; a backend decides how:
//
//   - Every parameter read by forward or backward compute is read through a working copy:
//     round_to_precision(p) -> p@bf16, one node per parameter placed right before its first
//     reader, so it is rounded once per step (--dump-graph shows the node). Its optimizer update
//     still reads and writes the f32 master p, and the f32 optimizer state; since the readers
//     no longer read p, the update may run as early as ScheduleUpdates lets it without changing
//     what the rest of the step computes.
//   - Every float activation and activation gradient that a forward or backward node writes,
//     parameter gradients included, gets Value::precision: stored in the working precision.
//     Kept f32: the loss (reported and seeded in f32), what update-phase nodes write (gradient
//     norms), in-place state (batch norm running statistics, gradient accumulators: gradients
//     accumulate over micro-batches in f32), model inputs, and the statistics outputs that a
//     fused low-precision kernel keeps in f32 (Op::StatisticsOutputs: layer norm's mean and
//     1/std, attention's log-sum-exp, batch norm's sums).
//   - Data parallel: a gradient summed over the ranks stays in the working precision (the
//     reduce_scatter's shard takes its gradient's flag; the Program rounds what an all_reduce
//     sums in place). Each rank's part is rounded, the sum is taken in f32 and rounded once: the
//     gradient differs from one process's in its last working bits only, and with f16 a sum past
//     65504 overflows as one process's gradient would, so every world size skips the same steps.
//
// On CPU every kernel computes in f32 and every value keeps its f32 bytes: the Program rounds a
// flagged value in place right after the node that writes it runs (cpu::RoundToPrecision: round to
// nearest even; for f16 also overflow to +-inf past 65504 and gradual underflow), so the numerics
// — the lost low bits and f16's overflow included — are those of a backend that stores the value
// in the working precision, while the memory plan, the in-place outputs and the executor stay
// exactly as for f32 (no new value, nothing allocated per step). The cost is that the planned
// bytes are f32's. A CUDA backend reads the same flags as dtypes: it plans a flagged value at
// 2 bytes per element, and its kernels read and write bf16/f16 with f32 accumulation.
//
// Dynamic loss scaling (f16 by default, TrainOptions::loss_scaling; optim/loss_scale.h): f16's
// smallest subnormal is 2^-24, so small gradients would flush to zero. The backward's seed is
// multiplied by the current scale (StepScalars::loss_scale; the Program rewrites the seed constant
// before each step), so every gradient carries it. The global gradient norm is computed whenever
// loss scaling is on (as for clipping, and with the same consequence: every update waits for it,
// Note [updates as soon as the gradient is final]); it is not finite exactly when some gradient
// overflowed (an f16 gradient is at most 65504, so its f32 norm cannot overflow by itself). Each
// update then either does nothing (the step is skipped) or multiplies its gradient by 1 / scale,
// folded with the clipping factor of the unscaled norm into one factor (UnscaleAndClipGrads), so
// the optimizer only ever sees unscaled f32 gradients. After the step the scaler halves the scale
// on overflow, or doubles it after growth_interval good steps in a row.
// A skipped step is not an optimizer step, as with GradScaler, which skips optimizer.step(): the
// Program's step count (AdamW's bias correction and the learning-rate schedule's position) does
// not advance, so the next step retries the same step number with the smaller scale. The scale
// and the good-step count are saved in checkpoints beside the step count (graph/checkpoint.h).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"

namespace strata::graph {
namespace {

bool Contains(const std::vector<int>& v, int x) {
  for (int y : v) {
    if (y == x) return true;
  }
  return false;
}

// Forward and backward compute: what the micro-step runs on the compute stream.
bool IsCompute(const Node& n) {
  return n.phase == Phase::kMicroStep && !n.op->RunsOnSideStream();
}

}  // namespace

absl::Status ApplyMixedPrecision(Graph& graph, DType precision, ValueId loss) {
  if (precision == DType::kF32) return absl::OkStatus();
  if (precision != DType::kBF16 && precision != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("mixed precision: precision ",
                                                   DTypeName(precision),
                                                   " is not a working precision (bf16 or f16)"));
  }
  // Activations and their gradients; a gradient's reduced shard as the gradient (the Program also
  // rounds what an all_reduce sums in place: a stored gradient is stored in the working precision
  // however many ranks summed it, so that f16 overflows where one process's would).
  for (const Node& n : graph.nodes()) {
    if (n.op->kind() == OpKind::kReduceScatter) {
      graph.mutable_value(n.outputs[0]).precision = graph.value(n.inputs[0]).precision;
      continue;
    }
    if (!IsCompute(n)) continue;
    const std::vector<int> statistics = n.op->StatisticsOutputs();
    for (int i = 0; i < static_cast<int>(n.outputs.size()); ++i) {
      const ValueId v = n.outputs[i];
      if (v == kNoValue || v == loss || Contains(statistics, i)) continue;
      Value& value = graph.mutable_value(v);
      const ValueRole r = value.role;
      if (value.type.dtype != DType::kF32 ||
          (r != ValueRole::kActivation && r != ValueRole::kGradient && r != ValueRole::kOutput)) {
        continue;
      }
      value.precision = precision;
    }
  }
  // Working copies of the parameters, each before its first compute reader.
  const std::vector<Node>& nodes = graph.nodes();
  std::vector<ValueId> copy_of(graph.num_values(), kNoValue);
  std::vector<std::vector<Node>> before(nodes.size());
  std::vector<Node> rewritten;
  rewritten.reserve(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    Node n = nodes[i];
    if (IsCompute(n)) {
      const std::vector<int> mutated = n.op->MutatedInputs();
      for (int j = 0; j < static_cast<int>(n.inputs.size()); ++j) {
        const ValueId p = n.inputs[j];
        if (p == kNoValue || Contains(mutated, j)) continue;
        const Value& param = graph.value(p);
        if (param.role != ValueRole::kParameter || param.type.dtype != DType::kF32) continue;
        if (copy_of[p] == kNoValue) {
          const TensorType type = param.type;  // copies: AddValue may reallocate
          const std::string name = absl::StrCat(param.name, "@", DTypeName(precision));
          copy_of[p] = graph.AddValue(type, ValueRole::kActivation, name);
          Node round;
          round.op = ops::RoundToPrecisionOp(precision);
          round.inputs = {p};
          round.outputs = {copy_of[p]};
          round.scope = n.scope;
          rewritten.push_back(std::move(round));
        }
        n.inputs[j] = copy_of[p];
      }
    }
    rewritten.push_back(std::move(n));
  }
  graph.mutable_nodes() = std::move(rewritten);
  return absl::OkStatus();
}

}  // namespace strata::graph
