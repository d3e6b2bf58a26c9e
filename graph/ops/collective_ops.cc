// Collectives as nodes of the IR: the Program runs them over its communicator on the IO stream
// (Note [data parallel] in graph/compile.cc); Run is what they mean in a world of one.
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
  bool RunsOnIoStream() const override { return true; }
};

}  // namespace

std::shared_ptr<const Op> AllReduceOp() { return std::make_shared<AllReduce>(); }

}  // namespace strata::graph::ops
