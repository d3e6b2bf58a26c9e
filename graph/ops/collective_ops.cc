// Collectives as nodes of the IR: the Program runs them over its communicator on the communication stream
// (Note [data parallel] in graph/compile.cc); Run is what they mean in a world of one.
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

#include "graph/ops/ops.h"

namespace strata::graph::ops {
namespace {

// (gradients...) -> each summed over the ranks, in place; several go out as one bucketed message
// (Note [bucketed all-reduces] in graph/passes/bucket_all_reduces.cc).
class AllReduce final : public Op {
 public:
  explicit AllReduce(int arity) : arity_(arity) {}
  OpKind kind() const override { return OpKind::kAllReduce; }
  std::string Attributes() const override {
    return arity_ > 1 ? absl::StrCat("bucket=", arity_) : "";
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    if (static_cast<int>(in.size()) != arity_) {
      return absl::InvalidArgumentError(
          absl::StrCat("all_reduce: a bucket of ", arity_, " values given ", in.size()));
    }
    for (const TensorType& t : in) {
      if (t.dtype != DType::kF32) {
        return absl::InvalidArgumentError("all_reduce: every value must be f32");
      }
    }
    return std::vector<TensorType>{};
  }
  std::vector<int> MutatedInputs() const override {
    std::vector<int> all(arity_);
    for (int i = 0; i < arity_; ++i) all[i] = i;
    return all;
  }
  absl::Status Run(const RunArgs&) const override { return absl::OkStatus(); }
  bool RunsOnSideStream() const override { return true; }

 private:
  int arity_;
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

std::shared_ptr<const Op> AllReduceOp(int arity) { return std::make_shared<AllReduce>(arity); }
std::shared_ptr<const Op> AllGatherOp() { return std::make_shared<AllGather>(); }
std::shared_ptr<const Op> ReduceScatterOp() { return std::make_shared<ReduceScatter>(); }

}  // namespace strata::graph::ops
