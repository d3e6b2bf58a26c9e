// Collectives as nodes of the IR: the Program runs them over its communicator on the communication stream
// (Note [data parallel] in graph/compile.cc); Run is what they mean in a world of one.
#include <cstring>

#include "graph/ops/ops.h"

namespace strata::graph::ops {
namespace {

// (gradient) -> the gradient summed over the ranks, in place.
class AllReduce final : public Op {
 public:
  OpKind kind() const override { return OpKind::kAllReduce; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    if (in.size() != 1 || in[0].dtype != DType::kF32) {
      return absl::InvalidArgumentError("all_reduce: needs one f32 value");
    }
    return std::vector<TensorType>{};
  }
  std::vector<int> MutatedInputs() const override { return {0}; }
  absl::Status Run(const RunArgs&) const override { return absl::OkStatus(); }
  bool RunsOnSideStream() const override { return true; }
};

// (parameter) -> every rank's shard of it, in place: after a stage 1-2 update wrote this rank's
// shard (Note [zero partition] in graph/passes/zero_partition.cc).
class AllGather final : public Op {
 public:
  OpKind kind() const override { return OpKind::kAllGather; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    if (in.size() != 1 || in[0].dtype != DType::kF32) {
      return absl::InvalidArgumentError("all_gather: needs one f32 value");
    }
    return std::vector<TensorType>{};
  }
  std::vector<int> MutatedInputs() const override { return {0}; }
  absl::Status Run(const RunArgs&) const override { return absl::OkStatus(); }
  bool RunsOnSideStream() const override { return true; }
};

// (gradient) -> this rank's shard of its sum over the ranks, a value of the same type that holds
// only the shard (Value::shard). In a world of one the shard is the whole gradient.
class ReduceScatter final : public Op {
 public:
  OpKind kind() const override { return OpKind::kReduceScatter; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    if (in.size() != 1 || in[0].dtype != DType::kF32) {
      return absl::InvalidArgumentError("reduce_scatter: needs one f32 value");
    }
    return std::vector<TensorType>{in[0]};
  }
  absl::Status Run(const RunArgs& a) const override {
    if (a.out[0].numel() != a.in[0].numel()) {
      return absl::InternalError("reduce_scatter: in a world of one the shard is the whole value");
    }
    std::memcpy(a.out[0].raw_data(), a.in[0].raw_data(), a.in[0].nbytes());
    return absl::OkStatus();
  }
  bool RunsOnSideStream() const override { return true; }
};

}  // namespace

std::shared_ptr<const Op> AllReduceOp() { return std::make_shared<AllReduce>(); }
std::shared_ptr<const Op> AllGatherOp() { return std::make_shared<AllGather>(); }
std::shared_ptr<const Op> ReduceScatterOp() { return std::make_shared<ReduceScatter>(); }

}  // namespace strata::graph::ops
