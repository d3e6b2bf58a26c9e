// Op kinds (graph/op_kind.h): every kind has its own name, and every op the graph layer makes
// reports a kind that no other op class reports, under the name its kind gives. Passes match on
// kinds, so two ops sharing a kind would be fused or moved as one; tests/graph/passes_test.cc
// checks that a renamed op keeps every pass working.
#include "graph/op_kind.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <typeindex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/models/llama.h"
#include "graph/nn/layers.h"
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "gtest/gtest.h"

namespace strata::graph {
namespace {

std::vector<OpKind> AllKinds() {
  std::vector<OpKind> kinds;
  for (int k = 0; k < static_cast<int>(OpKind::kNumOpKinds); ++k) {
    kinds.push_back(static_cast<OpKind>(k));
  }
  return kinds;
}

TEST(OpKindTest, EveryKindHasItsOwnSnakeCaseName) {
  std::map<std::string, int> seen;
  for (OpKind kind : AllKinds()) {
    const std::string name(OpKindName(kind));
    const int k = static_cast<int>(kind);
    EXPECT_FALSE(name.empty()) << "OpKind " << k << " has no name in OpKindName";
    EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_"), std::string::npos)
        << name;
    const auto [it, inserted] = seen.emplace(name, k);
    EXPECT_TRUE(inserted) << "OpKind " << k << " and " << it->second << " are both " << name;
  }
  EXPECT_EQ(OpKindName(OpKind::kNumOpKinds), "");
}

// Every op of graph/ops/ in one model: the forward ops and, through autodiff, their gradients.
class EveryOp : public Module {
 public:
  EveryOp()
      : conv_(Add<nn::Conv2d>("conv", 2, 4, nn::Conv2dOptions{.params = {.pad_h = 1, .pad_w = 1}})),
        bn_(Add<nn::BatchNorm2d>("bn", 4)),
        frozen_bn_(Add<nn::BatchNorm2d>("frozen_bn", 4)),
        fc_(Add<nn::Linear>("fc", 4, 3)),
        shift_(AddParameter("shift", Shape{3}, Init::Normal(0, 1))),
        offset_(AddParameter("offset", Shape{8}, Init::Normal(0, 1))),
        probe_(AddParameter("probe", Shape{2, 3}, Init::Normal(0, 1), /*trainable=*/false)) {
    frozen_bn_->SetFrozen(true);
  }
  // x (2, 2, 8, 8), targets (2).
  Var Loss(Var x, Var targets) {
    Var h = ops::Dropout(ops::Relu6((*frozen_bn_)((*bn_)((*conv_)(x)))), 0.25f);
    // The activations that no model here uses, chained (each keeps the shape).
    h = ops::GeluExact(ops::Softplus(ops::Silu(ops::Tanh(ops::Sigmoid(h)))));
    // The arithmetic (math_ops.cc): h * (h^2 + 1) / sqrt(exp(h) - h) ... every op once.
    Var positive = ops::ScaleShift(ops::Pow(h, 2.0f), 1.0f, 1.0f);
    h = ops::Div(ops::Mul(h, ops::Rsqrt(positive)), ops::Sqrt(ops::Exp(ops::Log(positive))));
    h = ops::Sub(h, ops::Expand(offset_->var(), Shape{2, 4, 8, 8}));
    // Reductions and softmaxes (reduce_ops.cc): the max over a dim, put back by a summed
    // broadcast, and the softmaxes over the last dim.
    h = ops::Add(ops::LogSoftmax(ops::Softmax(h)), ops::Mean(ops::Max(h, 2, true), {}, false));
    // Shape ops and matrix products (shape_ops.cc, matmul_ops.cc): h (2, 4, 8, 8) with its
    // last two dims swapped, multiplied by itself per batch, sliced in two halves and joined.
    h = ops::BatchedMatmul(h, ops::Permute(h, {0, 1, 3, 2}));
    h = ops::Matmul(h, ops::Concat({ops::Slice(ops::Reshape(h, Shape{64, 8}), 0, 0, 4),
                                    ops::Slice(ops::Reshape(h, Shape{64, 8}), 0, 4, 8)}, 0));
    h = ops::Relu(ops::AvgPool2d(ops::MaxPool2d(h, {}), {}));     // (2, 4, 2, 2)
    h = ops::Reshape(ops::GlobalAvgPool(h), Shape{2, 1, 4});      // (2, 1, 4)
    Var logits = ops::Reshape(ops::Add((*fc_)(h), shift_->var()), Shape{2, 3});  // sum_to
    return ops::Add(ops::CrossEntropy(logits, targets), ops::WeightedSum(logits, probe_->var()));
  }

 private:
  nn::Conv2d* conv_;
  nn::BatchNorm2d* bn_;
  nn::BatchNorm2d* frozen_bn_;
  nn::Linear* fc_;
  Parameter* shift_;
  Parameter* offset_;
  Parameter* probe_;
};

// The traced step of `loss` on `model` with every pass applied.
void CollectOps(Module& model, const std::vector<InputSpec>& inputs, const LossFn& loss,
                const TrainOptions& options, std::vector<std::shared_ptr<const Op>>& ops) {
  absl::StatusOr<TrainingGraph> t = TraceTrainingStep(model, inputs, loss, options);
  ASSERT_TRUE(t.ok()) << t.status();
  for (const Node& n : t->graph.nodes()) ops.push_back(n.op);
  ASSERT_TRUE(FuseCrossEntropy(t->graph).ok());
  ASSERT_TRUE(FuseResidualAdd(t->graph).ok());
  ASSERT_TRUE(SaveReluMasks(t->graph).ok());
  for (const Node& n : t->graph.nodes()) ops.push_back(n.op);
}

TEST(OpKindTest, EveryKindIsMadeByExactlyOneOpClassUnderItsName) {
  std::vector<std::shared_ptr<const Op>> ops;
  // A GPT with AdamW and clipping: attention, layer norm, GELU, embedding, the fused residual
  // ops, grad_norm, global_grad_norm and adamw_update.
  Gpt gpt(GptConfig{.vocab = 16, .block_size = 4, .layers = 1, .width = 8, .heads = 2});
  TrainOptions adamw;
  adamw.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  adamw.clip_grad_norm = 1.0;
  CollectOps(gpt, {{"ids", Shape{2, 4}, DType::kI32}, {"targets", Shape{2, 4}, DType::kI32}},
             [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
             adamw, ops);
  // A Llama (grouped-query attention, rotary, RMSNorm) with a smoothed cross-entropy.
  Llama llama(LlamaConfig{.vocab = 16, .hidden = 8, .intermediate = 12, .layers = 1, .heads = 2,
                          .kv_heads = 1, .max_positions = 4});
  CollectOps(llama, {{"ids", Shape{2, 4}, DType::kI32}, {"targets", Shape{2, 4}, DType::kI32}},
             [&](absl::Span<const Var> in) {
               return ops::CrossEntropy(llama.Forward(in[0]), in[1], {.label_smoothing = 0.1f});
             },
             adamw, ops);
  // A weight that trains its first input channels only: channel_slice.
  Gpt partial(GptConfig{.vocab = 16, .block_size = 4, .layers = 1, .width = 8, .heads = 2});
  partial.FindParameter("h.0.mlp.c_fc.weight")->set_trained_channels(4);
  CollectOps(partial, {{"ids", Shape{2, 4}, DType::kI32}, {"targets", Shape{2, 4}, DType::kI32}},
             [&](absl::Span<const Var> in) { return ops::CrossEntropy(partial.Forward(in[0]), in[1]); },
             adamw, ops);
  // The rest with SGD (momentum) over two micro-batches: accumulate, zero and sgd_update.
  EveryOp every;
  TrainOptions sgd;
  sgd.optimizer = OptimizerOptions::Sgd(0.9, 0.0);
  sgd.micro_batches = 2;
  CollectOps(every, {{"x", Shape{2, 2, 8, 8}, DType::kF32}, {"targets", Shape{2}, DType::kI32}},
             [&](absl::Span<const Var> in) { return every.Loss(in[0], in[1]); }, sgd, ops);

  // Mixed precision: round_to_precision, the parameters' working copies.
  Gpt mixed(GptConfig{.vocab = 16, .block_size = 4, .layers = 1, .width = 8, .heads = 2});
  TrainOptions bf16 = adamw;
  bf16.precision = DType::kBF16;
  absl::StatusOr<TrainingGraph> m = TraceTrainingStep(
      mixed, {{"ids", Shape{2, 4}, DType::kI32}, {"targets", Shape{2, 4}, DType::kI32}},
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(mixed.Forward(in[0]), in[1]); },
      bf16);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(ApplyMixedPrecision(m->graph, DType::kBF16, m->config.loss).ok());
  for (const Node& n : m->graph.nodes()) ops.push_back(n.op);

  // Offload: fetch, write_back and offloaded_update, from a compiled program's graph.
  Gpt offloaded(GptConfig{.vocab = 16, .block_size = 4, .layers = 1, .width = 8, .heads = 2});
  TrainOptions nvme = adamw;
  nvme.offload.params = MemoryTier::kNvme;
  nvme.offload.grads = MemoryTier::kHost;
  nvme.offload.optimizer = MemoryTier::kNvme;
  nvme.offload.io.dir = ::testing::TempDir();
  nvme.offload.persistence_threshold = 0;
  auto program = Compile(
      offloaded, {{"ids", Shape{2, 4}, DType::kI32}, {"targets", Shape{2, 4}, DType::kI32}},
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(offloaded.Forward(in[0]), in[1]); },
      nvme);
  ASSERT_TRUE(program.ok()) << program.status();
  for (const Node& n : (*program)->graph().nodes()) ops.push_back(n.op);
  // The collectives and the synchronized batch norm ops are compiled in only with a communicator
  // of several ranks (MPI jobs: graph_data_parallel_test); the collectives' factories are their
  // only makers, the batch norm ops come from the pass itself.
  ops.push_back(ops::AllReduceOp());
  ops.push_back(ops::AllGatherOp());
  ops.push_back(ops::ReduceScatterOp());
  EveryOp synced;
  absl::StatusOr<TrainingGraph> t = TraceTrainingStep(
      synced, {{"x", Shape{2, 2, 8, 8}, DType::kF32}, {"targets", Shape{2}, DType::kI32}},
      [&](absl::Span<const Var> in) { return synced.Loss(in[0], in[1]); }, sgd);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(SyncBatchNorm(t->graph, 0, 2).ok());
  for (const Node& n : t->graph.nodes()) ops.push_back(n.op);

  std::map<OpKind, std::set<std::type_index>> classes;
  for (const std::shared_ptr<const Op>& op : ops) {
    classes[op->kind()].insert(std::type_index(typeid(*op)));
    EXPECT_EQ(op->name(), OpKindName(op->kind())) << "an op overrides its kind's name";
  }
  std::vector<std::string> missing;
  for (OpKind kind : AllKinds()) {
    const auto it = classes.find(kind);
    if (it == classes.end()) {
      missing.emplace_back(OpKindName(kind));
      continue;
    }
    EXPECT_EQ(it->second.size(), 1u) << OpKindName(kind) << " is made by several op classes";
  }
  EXPECT_TRUE(missing.empty()) << "no op in the test graphs has kind "
                               << absl::StrJoin(missing, ", ")
                               << " (add the op to EveryOp or the GPT step above)";
}

}  // namespace
}  // namespace strata::graph
