// rotary (position embedding of query and key heads), its gradient (the inverse rotation), and
// the constant table of cosines and sines it reads.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::TypeError;

// (x (B, T, H D), table (T', D)) -> y like x; `inverse` rotates by the opposite angles (the
// gradient, whose own gradient is the forward again).
class RotaryOp final : public Op {
 public:
  RotaryOp(int heads, bool inverse) : heads_(heads), inverse_(inverse) {}
  OpKind kind() const override { return inverse_ ? OpKind::kRotaryGrad : OpKind::kRotary; }
  std::string Attributes() const override { return absl::StrCat("heads=", heads_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "table", in[1]));
    const Shape& x = in[0].shape;
    if (heads_ <= 0 || x.rank() != 3 || x[2] % heads_ != 0 || (x[2] / heads_) % 2 != 0) {
      return TypeError(name(), "x is ", in[0].ToString(), ", expected (B, T, heads * D) with ",
                       "heads = ", heads_, " and D even");
    }
    const Shape& t = in[1].shape;
    if (t.rank() != 2 || t[1] != x[2] / heads_ || t[0] < x[1]) {
      return TypeError(name(), "table is ", in[1].ToString(), ", expected (positions >= ", x[1],
                       ", ", x[2] / heads_, ") for x ", in[0].ToString());
    }
    return std::vector<TensorType>{in[0]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}}; }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    const Tensor& x = a.in[0];
    const int64_t heads[] = {x.dim(0), x.dim(1), heads_, x.dim(2) / heads_};
    STRATA_ASSIGN_OR_RETURN(const Tensor x4, x.Reshape(heads));
    STRATA_ASSIGN_OR_RETURN(const Tensor y4, a.out[0].Reshape(heads));
    return inverse_ ? STRATA_KERNEL(a, RotaryBackward, a.in[1], x4, y4)
                    : STRATA_KERNEL(a, RotaryForward, x4, a.in[1], y4);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    if (g.needs_grad[0]) {
      g.input_grads[0] = internal::Apply1(std::make_shared<RotaryOp>(heads_, !inverse_),
                                          {internal::Dout(g, 0), internal::In(g, 1)})
                             .id();
    }
    return g.tracer.status();
  }

 private:
  int heads_;
  bool inverse_;
};

}  // namespace

Var RotaryTable(const Var& like, int64_t positions, int64_t head_dim, double theta,
                const cpu::RotaryScaling& scaling, const std::string& name) {
  if (!like.valid()) return Var();
  Tracer& t = *like.tracer();
  std::string bytes(positions * head_dim * sizeof(float), '\0');
  const Tensor table =
      Tensor::Wrap(bytes.data(), Shape{positions, head_dim}, DType::kF32, Device::Cpu());
  if (absl::Status s = cpu::RotaryTable(theta, scaling, table); !s.ok()) {
    t.Fail(absl::InvalidArgumentError(absl::StrCat("rotary table '", name, "': ", s.message())));
    return Var();
  }
  Var v = t.NewValue({Shape{positions, head_dim}, DType::kF32}, ValueRole::kConstant, name);
  t.graph().SetConstant(v.id(), std::move(bytes));
  return v;
}

Var Rotary(Var x, Var table, int heads) {
  return internal::Apply1(std::make_shared<RotaryOp>(heads, /*inverse=*/false), {x, table});
}

}  // namespace strata::graph::ops
