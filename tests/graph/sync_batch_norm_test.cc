// The SyncBatchNorm pass (Note [synchronized batch norm] in graph/passes/sync_batch_norm.cc) on
// the CNN's traced step: a world of one leaves the graph as it is; on several ranks every
// training batch_norm and its gradient become stats -> all_reduce -> apply, with the ops' types
// and attributes; recompute then copies the apply without its running-statistics update and
// reads the all_reduced statistics of the forward, issuing no collective of its own. The numbers
// are tested in tests/runtime/cpu/sync_batchnorm_test.cc (against double precision) and
// tests/graph/data_parallel_test.cc (against the one-process run, on 2 and 3 ranks).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "graph/compile.h"
#include "graph/models/mobilenet.h"
#include "graph/nn/layers.h"
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "gtest/gtest.h"

namespace strata::graph {
namespace {

using ::testing::HasSubstr;

MobileNetConfig Tiny() {
  MobileNetConfig c;
  c.stem = 4;
  c.blocks = {{4, 4, 1, 1}, {4, 8, 2, 2}};
  c.head = 8;
  return c;
}

Graph Traced(MobileNet& net) {
  TrainOptions o;
  o.optimizer = OptimizerOptions::Sgd(0.9, 5e-4);
  absl::StatusOr<TrainingGraph> t = TraceTrainingStep(
      net, {{"images", Shape{2, 1, 12, 12}}, {"labels", Shape{2}, DType::kI32}},
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(net.Forward(in[0]), in[1]); }, o);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(t->graph) : Graph();
}

int Count(const Graph& g, OpKind kind, bool recomputed = false) {
  int n = 0;
  for (const Node& node : g.nodes()) n += node.op->kind() == kind && node.recomputed == recomputed;
  return n;
}

TEST(SyncBatchNormPassTest, WorldOfOneLeavesTheGraphAsItIs) {
  MobileNet net(Tiny());
  Graph g = Traced(net);
  const std::string before = g.ToString();
  ASSERT_TRUE(SyncBatchNorm(g, 0, 1).ok());
  EXPECT_EQ(g.ToString(), before);
  EXPECT_GT(Count(g, OpKind::kBatchNorm), 0);
}

TEST(SyncBatchNormPassTest, EveryTrainingBatchNormIsSplitAroundAnAllReduce) {
  MobileNet net(Tiny());
  Graph g = Traced(net);
  const int forward = Count(g, OpKind::kBatchNorm), backward = Count(g, OpKind::kBatchNormGrad);
  ASSERT_GT(forward, 0);
  ASSERT_EQ(backward, forward);
  ASSERT_EQ(Count(g, OpKind::kAllReduce), 0);
  ASSERT_TRUE(SyncBatchNorm(g, 1, 3).ok());
  EXPECT_EQ(Count(g, OpKind::kBatchNorm), 0);
  EXPECT_EQ(Count(g, OpKind::kBatchNormGrad), 0);
  EXPECT_EQ(Count(g, OpKind::kBatchNormStats), forward);
  EXPECT_EQ(Count(g, OpKind::kBatchNormSynced), forward);
  EXPECT_EQ(Count(g, OpKind::kBatchNormGradStats), backward);
  EXPECT_EQ(Count(g, OpKind::kBatchNormGradSynced), backward);
  EXPECT_EQ(Count(g, OpKind::kAllReduce), forward + backward);
  const std::vector<Node>& nodes = g.nodes();
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    const OpKind k = n.op->kind();
    if (k != OpKind::kBatchNormStats && k != OpKind::kBatchNormGradStats) continue;
    EXPECT_EQ(n.op->Attributes(), "rank=1 world=3");
    const ValueId stats = n.outputs.back();
    ASSERT_NE(stats, kNoValue);
    const int64_t channels = g.value(n.inputs[0]).type.shape[1];
    EXPECT_EQ(g.value(stats).type.shape, Shape({3, 4, channels}));
    // stats -> all_reduce of it -> the node that applies it, with the same scope.
    ASSERT_LT(i + 2, nodes.size());
    EXPECT_EQ(nodes[i + 1].op->kind(), OpKind::kAllReduce);
    EXPECT_EQ(nodes[i + 1].inputs, std::vector<ValueId>{stats});
    EXPECT_EQ(nodes[i + 2].op->kind(), k == OpKind::kBatchNormStats
                                           ? OpKind::kBatchNormSynced
                                           : OpKind::kBatchNormGradSynced);
    EXPECT_EQ(nodes[i + 2].inputs.back(), stats);
    EXPECT_EQ(nodes[i + 2].scope, n.scope);
    if (k == OpKind::kBatchNormStats) {
      EXPECT_EQ(nodes[i + 2].op->MutatedInputs(), (std::vector<int>{3, 4}));
      EXPECT_TRUE(nodes[i + 2].op->MutatesOnlyWhenTraining());
      EXPECT_THAT(nodes[i + 2].op->Attributes(), HasSubstr("momentum=0.1"));
    }
  }
}

TEST(SyncBatchNormPassTest, RecomputeReadsTheForwardsSummedStatisticsAndIssuesNoCollective) {
  MobileNet net(Tiny());
  Graph g = Traced(net);
  ASSERT_TRUE(SyncBatchNorm(g, 0, 2).ok());
  const int all_reduces = Count(g, OpKind::kAllReduce);
  std::vector<ValueId> summed;  // the forward's all_reduced statistics
  for (const Node& n : g.nodes()) {
    if (n.op->kind() == OpKind::kBatchNormStats) summed.push_back(n.outputs[0]);
  }
  ASSERT_TRUE(RecomputeActivations(g).ok());
  EXPECT_EQ(Count(g, OpKind::kAllReduce), all_reduces);
  EXPECT_EQ(Count(g, OpKind::kAllReduce, /*recomputed=*/true), 0);
  EXPECT_EQ(Count(g, OpKind::kBatchNormStats, /*recomputed=*/true), 0);
  int copies = 0;
  for (const Node& n : g.nodes()) {
    if (!n.recomputed || n.op->kind() != OpKind::kBatchNormSynced) continue;
    ++copies;
    EXPECT_TRUE(n.op->MutatedInputs().empty()) << "a copy updated the running statistics";
    EXPECT_THAT(summed, ::testing::Contains(n.inputs.back()))
        << "a copy reads statistics that no all_reduce summed";
  }
  EXPECT_GT(copies, 0);
}

// images -> bn -> conv -> pooled logits: the batch norm's input needs no gradient.
class NormalizedInput : public Module {
 public:
  NormalizedInput()
      : bn_(Add<nn::BatchNorm2d>("bn", 2)),
        conv_(Add<nn::Conv2d>("conv", 2, 3, nn::Conv2dOptions{.params = {.pad_h = 1, .pad_w = 1}})) {}
  Var Loss(Var images, Var labels) {
    return ops::CrossEntropy(ops::GlobalAvgPool((*conv_)((*bn_)(images))), labels);
  }

 private:
  nn::BatchNorm2d* bn_;
  nn::Conv2d* conv_;
};

// Without dx the sums over the ranks have no use: gamma's and beta's shares are summed by their
// gradients' all_reduce.
TEST(SyncBatchNormPassTest, NoInputGradientNoSumOverTheRanks) {
  NormalizedInput m;
  TrainOptions o;
  o.optimizer = OptimizerOptions::Sgd(0, 0);
  absl::StatusOr<TrainingGraph> t = TraceTrainingStep(
      m, {{"images", Shape{2, 2, 4, 4}}, {"labels", Shape{2}, DType::kI32}},
      [&](absl::Span<const Var> in) { return m.Loss(in[0], in[1]); }, o);
  ASSERT_TRUE(t.ok()) << t.status();
  Graph& g = t->graph;
  ASSERT_TRUE(SyncBatchNorm(g, 0, 2).ok());
  EXPECT_EQ(Count(g, OpKind::kBatchNormStats), 1);
  ASSERT_EQ(Count(g, OpKind::kBatchNormGradStats), 1);
  EXPECT_EQ(Count(g, OpKind::kBatchNormGradSynced), 0);
  for (const Node& n : g.nodes()) {
    if (n.op->kind() != OpKind::kBatchNormGradStats) continue;
    EXPECT_EQ(n.outputs.back(), kNoValue);
    EXPECT_NE(n.outputs[0], kNoValue);  // dgamma
  }
  // The forward's statistics only (the gradients' all_reduce nodes come with a communicator).
  EXPECT_EQ(Count(g, OpKind::kAllReduce), 1);
}

TEST(SyncBatchNormPassTest, OpsNameTheirBadInputs) {
  const TensorType x{Shape{2, 3, 4, 4}, DType::kF32}, c{Shape{3}, DType::kF32};
  const TensorType stats{Shape{2, 4, 3}, DType::kF32}, wrong{Shape{2, 4, 5}, DType::kF32};
  absl::StatusOr<std::vector<TensorType>> t =
      ops::BatchNormGradSyncedOp()->Infer({x, c, c, c, x, wrong});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("batch_norm_grad_synced"));
  EXPECT_THAT(t.status().message(), HasSubstr("stats is f32[2, 4, 5]"));
  t = ops::BatchNormGradStatsOp(0, 2)->Infer({x, c, TensorType{Shape{4}, DType::kF32}, x});
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("save_rstd"));
  t = ops::BatchNormStatsOp(1, 2)->Infer({x});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)[0], stats);
  // Only a batch_norm has a synchronized form.
  EXPECT_EQ(ops::BatchNormSyncedOp(*ops::AllReduceOp()), nullptr);
}

TEST(SyncBatchNormPassTest, BadRankIsAnError) {
  MobileNet net(Tiny());
  Graph g = Traced(net);
  for (auto [rank, world] : {std::pair{2, 2}, std::pair{-1, 2}, std::pair{0, 0}}) {
    const absl::Status s = SyncBatchNorm(g, rank, world);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("rank ", rank, " of a world of ", world)));
  }
}

}  // namespace
}  // namespace strata::graph
