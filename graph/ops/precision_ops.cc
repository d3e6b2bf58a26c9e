// The working copy of a parameter in mixed precision (Note [mixed precision] in
// graph/passes/mixed_precision.cc).
#include <cstring>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

// x -> x rounded to `precision`, kept f32 on CPU. Not differentiable: the pass that inserts it
// runs after autodiff and hands each reader the copy in place of the parameter, whose gradient
// autodiff already wrote (the rounding's gradient is taken as the identity, as a cast's is).
class RoundToPrecision final : public Op {
 public:
  explicit RoundToPrecision(DType precision) : precision_(precision) {}
  OpKind kind() const override { return OpKind::kRoundToPrecision; }
  std::string Attributes() const override { return std::string(DTypeName(precision_)); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    return std::vector<TensorType>{in[0]};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_RETURN_IF_ERROR(STRATA_KERNEL(a, CopyStrided, a.in[0], a.out[0]));
    return STRATA_KERNEL(a, RoundToPrecision, a.out[0], precision_);
  }

 private:
  DType precision_;
};

}  // namespace

std::shared_ptr<const Op> RoundToPrecisionOp(DType precision) {
  return std::make_shared<RoundToPrecision>(precision);
}

}  // namespace strata::graph::ops
