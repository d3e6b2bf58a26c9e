// Elementwise arithmetic for custom models: a - b, a * b, a / b (broadcast as NumPy does), alpha x
// + beta, x^p, exp, log, sqrt and rsqrt, and the broadcast itself (expand).
// Their gradients are made of the same ops, so they need no kernels of their own.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::Apply1;
using internal::Dout;
using internal::EndsWith;
using internal::In;
using internal::Out;
using internal::TypeError;

// Whether x's shape broadcasts to `shape` (NumPy's rule: aligned from the back, each dimension
// of x equal to shape's or 1, missing leading dimensions repeated).
bool BroadcastsTo(const Shape& x, const Shape& shape) {
  if (x.rank() > shape.rank()) return false;
  for (int i = 1; i <= x.rank(); ++i) {
    if (x.dim(-i) != shape.dim(-i) && x.dim(-i) != 1) return false;
  }
  return true;
}

// x broadcast to `shape`: repeated along its size-1 dimensions and the leading ones it lacks.
class ExpandOp final : public Op {
 public:
  explicit ExpandOp(Shape shape) : shape_(std::move(shape)) {}
  OpKind kind() const override { return OpKind::kExpand; }
  std::string Attributes() const override { return absl::StrCat("shape=", shape_.ToString()); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    if (!BroadcastsTo(in[0].shape, shape_)) {
      return TypeError(name(), "x ", in[0].ToString(), " does not broadcast to ",
                       shape_.ToString());
    }
    return std::vector<TensorType>{{shape_, DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    const Tensor& x = a.in[0];
    const int64_t c = x.numel();
    if (c == 0 || shape_.numel() == 0) return absl::OkStatus();
    if (EndsWith(shape_, x.shape())) {  // a repeat of whole rows: the fast path
      STRATA_ASSIGN_OR_RETURN(const Tensor flat, x.Reshape({c}));
      STRATA_ASSIGN_OR_RETURN(const Tensor out, a.out[0].Reshape({shape_.numel() / c, c}));
      return STRATA_KERNEL(a, BroadcastRows, flat, out);
    }
    // A view of x with stride 0 along every repeated dimension, copied out.
    std::vector<int64_t> strides(shape_.rank(), 0);
    const int lead = shape_.rank() - x.rank();
    for (int i = 0; i < x.rank(); ++i) {
      strides[lead + i] = x.dim(i) == 1 ? 0 : x.stride(i);
    }
    STRATA_ASSIGN_OR_RETURN(const Tensor view,
                            Tensor::View(x.storage(), shape_, strides, x.offset(), x.dtype()));
    return STRATA_KERNEL(a, CopyStrided, view, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    // The sum over every repeated dimension, back in x's shape.
    // A copy: the ops below add values to the graph, which may move the one it refers to.
    const Shape x = g.tracer.graph().value(g.node.inputs[0]).type.shape;
    const Var dy = Dout(g, 0);
    if (EndsWith(shape_, x)) {
      g.input_grads[0] = SumTo(dy, x).id();
      return g.tracer.status();
    }
    std::vector<int> dims;
    const int lead = shape_.rank() - x.rank();
    for (int d = 0; d < shape_.rank(); ++d) {
      if (d < lead || (x.dim(d - lead) == 1 && shape_.dim(d) != 1)) dims.push_back(d);
    }
    g.input_grads[0] = Reshape(Sum(dy, dims, /*keepdim=*/true), x).id();
    return g.tracer.status();
  }

 private:
  Shape shape_;
};

enum class Binary { kSub, kMul, kDiv };

// a op b, both of one shape (the functions below expand a broadcast operand first).
class BinaryOp final : public Op {
 public:
  explicit BinaryOp(Binary op) : op_(op) {}
  OpKind kind() const override {
    switch (op_) {
      case Binary::kSub: return OpKind::kSub;
      case Binary::kMul: return OpKind::kMul;
      case Binary::kDiv: return OpKind::kDiv;
    }
    return OpKind::kNumOpKinds;  // not reached
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "a", in[0]));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "b", in[1]));
    if (in[0].shape != in[1].shape) {
      return TypeError(name(), "a ", in[0].ToString(), " and b ", in[1].ToString(),
                       " differ in shape");
    }
    return std::vector<TensorType>{in[0]};
  }
  // Elementwise: the result may overwrite either operand.
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}, {0, 1}}; }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    switch (op_) {
      case Binary::kSub:
        return STRATA_KERNEL(a, Sub, a.in[0], a.in[1], a.out[0]);
      case Binary::kMul:
        return STRATA_KERNEL(a, Mul, a.in[0], a.in[1], a.out[0]);
      case Binary::kDiv:
        return STRATA_KERNEL(a, Div, a.in[0], a.in[1], a.out[0]);
    }
    return absl::InternalError("unknown binary op");
  }
  absl::Status Gradient(GradientArgs& g) const override {
    const Var dy = Dout(g, 0);
    switch (op_) {
      case Binary::kSub:  // da = dy, db = -dy
        if (g.needs_grad[0]) g.input_grads[0] = dy.id();
        if (g.needs_grad[1]) g.input_grads[1] = Neg(dy).id();
        break;
      case Binary::kMul:  // da = dy b, db = dy a
        if (g.needs_grad[0]) g.input_grads[0] = Mul(dy, In(g, 1)).id();
        if (g.needs_grad[1]) g.input_grads[1] = Mul(dy, In(g, 0)).id();
        break;
      case Binary::kDiv: {  // da = dy / b, db = -dy a / b^2 = -(dy / b) (a / b)
        const Var da = Div(dy, In(g, 1));
        if (g.needs_grad[0]) g.input_grads[0] = da.id();
        if (g.needs_grad[1]) g.input_grads[1] = Neg(Mul(da, Out(g, 0))).id();
        break;
      }
    }
    return g.tracer.status();
  }

 private:
  Binary op_;
};

// alpha x + beta.
class ScaleShiftOp final : public Op {
 public:
  ScaleShiftOp(float alpha, float beta) : alpha_(alpha), beta_(beta) {}
  OpKind kind() const override { return OpKind::kScaleShift; }
  std::string Attributes() const override { return absl::StrCat("alpha=", alpha_, " beta=", beta_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    return std::vector<TensorType>{in[0]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}}; }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, ScaleShift, a.in[0], alpha_, beta_, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    g.input_grads[0] = Scale(Dout(g, 0), alpha_).id();
    return g.tracer.status();
  }

 private:
  float alpha_, beta_;
};

// x^p for a constant p.
class PowOp final : public Op {
 public:
  explicit PowOp(float exponent) : exponent_(exponent) {}
  OpKind kind() const override { return OpKind::kPow; }
  std::string Attributes() const override { return absl::StrCat("exponent=", exponent_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    return std::vector<TensorType>{in[0]};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, Pow, a.in[0], exponent_, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {  // dy p x^(p-1)
    g.input_grads[0] = Mul(Dout(g, 0), Scale(Pow(In(g, 0), exponent_ - 1.0f), exponent_)).id();
    return g.tracer.status();
  }

 private:
  float exponent_;
};

enum class Unary { kExp, kLog, kSqrt, kRsqrt };

class UnaryMathOp final : public Op {
 public:
  explicit UnaryMathOp(Unary fn) : fn_(fn) {}
  OpKind kind() const override {
    switch (fn_) {
      case Unary::kExp: return OpKind::kExp;
      case Unary::kLog: return OpKind::kLog;
      case Unary::kSqrt: return OpKind::kSqrt;
      case Unary::kRsqrt: return OpKind::kRsqrt;
    }
    return OpKind::kNumOpKinds;  // not reached
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    return std::vector<TensorType>{in[0]};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    switch (fn_) {
      case Unary::kExp:
        return STRATA_KERNEL(a, Exp, a.in[0], a.out[0]);
      case Unary::kLog:
        return STRATA_KERNEL(a, Log, a.in[0], a.out[0]);
      case Unary::kSqrt:
        return STRATA_KERNEL(a, Sqrt, a.in[0], a.out[0]);
      case Unary::kRsqrt:
        return STRATA_KERNEL(a, Rsqrt, a.in[0], a.out[0]);
    }
    return absl::InternalError("unknown unary op");
  }
  absl::Status Gradient(GradientArgs& g) const override {
    const Var dy = Dout(g, 0), y = Out(g, 0);
    Var dx;
    switch (fn_) {
      case Unary::kExp: dx = Mul(dy, y); break;                   // exp' = exp
      case Unary::kLog: dx = Div(dy, In(g, 0)); break;            // 1 / x
      case Unary::kSqrt: dx = Div(Scale(dy, 0.5f), y); break;     // 1 / (2 sqrt(x))
      case Unary::kRsqrt: dx = Mul(dy, Scale(Pow(y, 3.0f), -0.5f)); break;  // -x^(-3/2) / 2
    }
    g.input_grads[0] = dx.id();
    return g.tracer.status();
  }

 private:
  Unary fn_;
};

// a op b, each operand broadcast (NumPy's rule) to the shape of the result.
Var ApplyBinary(Binary op, Var a, Var b) {
  if (a.valid() && b.valid() && a.shape() != b.shape()) {
    // Copies: expanding a adds values to the graph, which may move b's.
    const Shape sa = a.shape(), sb = b.shape();
    std::vector<int64_t> out(std::max(sa.rank(), sb.rank()));
    bool fits = true;
    for (int i = 1; i <= static_cast<int>(out.size()); ++i) {
      const int64_t da = i <= sa.rank() ? sa.dim(-i) : 1, db = i <= sb.rank() ? sb.dim(-i) : 1;
      fits = fits && (da == db || da == 1 || db == 1);
      out[out.size() - i] = da == 1 ? db : da;
    }
    if (fits) {  // else BinaryOp's Infer names both shapes
      const Shape shape(out);
      if (sa != shape) a = Expand(a, shape);
      if (sb != shape) b = Expand(b, shape);
    }
  }
  return Apply1(std::make_shared<BinaryOp>(op), {a, b});
}

}  // namespace

Var Expand(Var x, const Shape& shape) { return Apply1(std::make_shared<ExpandOp>(shape), {x}); }
Var Sub(Var a, Var b) { return ApplyBinary(Binary::kSub, a, b); }
Var Mul(Var a, Var b) { return ApplyBinary(Binary::kMul, a, b); }
Var Div(Var a, Var b) { return ApplyBinary(Binary::kDiv, a, b); }
Var ScaleShift(Var x, float alpha, float beta) {
  return Apply1(std::make_shared<ScaleShiftOp>(alpha, beta), {x});
}
Var Scale(Var x, float alpha) { return ScaleShift(x, alpha, 0.0f); }
Var AddScalar(Var x, float beta) { return ScaleShift(x, 1.0f, beta); }
Var Neg(Var x) { return ScaleShift(x, -1.0f, 0.0f); }
Var Pow(Var x, float exponent) { return Apply1(std::make_shared<PowOp>(exponent), {x}); }
Var Exp(Var x) { return Apply1(std::make_shared<UnaryMathOp>(Unary::kExp), {x}); }
Var Log(Var x) { return Apply1(std::make_shared<UnaryMathOp>(Unary::kLog), {x}); }
Var Sqrt(Var x) { return Apply1(std::make_shared<UnaryMathOp>(Unary::kSqrt), {x}); }
Var Rsqrt(Var x) { return Apply1(std::make_shared<UnaryMathOp>(Unary::kRsqrt), {x}); }

}  // namespace strata::graph::ops
