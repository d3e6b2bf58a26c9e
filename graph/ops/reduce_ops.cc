// Reductions (sum, mean, max over chosen dimensions), softmax and log-softmax over the last
// dimension, and the losses made of them: mean squared error and binary cross-entropy with
// logits.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::Apply1;
using internal::ApplyGradient;
using internal::Dout;
using internal::In;
using internal::Out;
using internal::TypeError;

Shape Without(const Shape& s, int dim) {
  std::vector<int64_t> d;
  for (int i = 0; i < s.rank(); ++i) {
    if (i != dim) d.push_back(s.dim(i));
  }
  return Shape(d);
}

absl::Status CheckDim(absl::string_view op, const TensorType& x, int dim) {
  if (dim < 0 || dim >= x.shape.rank()) {
    return TypeError(op, "dim ", dim, " is out of range for x ", x.ToString());
  }
  return absl::OkStatus();
}

// x (..., n at `dim`, ...) -> x repeated n times along `dim` (the gradient of a sum).
class BroadcastDimOp final : public Op {
 public:
  BroadcastDimOp(int dim, int64_t n) : dim_(dim), n_(n) {}
  OpKind kind() const override { return OpKind::kBroadcastDim; }
  std::string Attributes() const override { return absl::StrCat("dim=", dim_, " n=", n_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    if (dim_ < 0 || dim_ > in[0].shape.rank()) {
      return TypeError(name(), "dim ", dim_, " is out of range for x ", in[0].ToString());
    }
    std::vector<int64_t> d(in[0].shape.dims().begin(), in[0].shape.dims().end());
    d.insert(d.begin() + dim_, n_);
    return std::vector<TensorType>{{Shape(d), DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, BroadcastDim, a.in[0], dim_, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override;

 private:
  int dim_;
  int64_t n_;
};

class SumDimOp final : public Op {
 public:
  explicit SumDimOp(int dim) : dim_(dim) {}
  OpKind kind() const override { return OpKind::kSumDim; }
  std::string Attributes() const override { return absl::StrCat("dim=", dim_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    STRATA_RETURN_IF_ERROR(CheckDim(name(), in[0], dim_));
    return std::vector<TensorType>{{Without(in[0].shape, dim_), DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, SumDim, a.in[0], dim_, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    const int64_t n = g.tracer.graph().value(g.node.inputs[0]).type.shape.dim(dim_);
    g.input_grads[0] = Apply1(std::make_shared<BroadcastDimOp>(dim_, n), {Dout(g, 0)}).id();
    return g.tracer.status();
  }

 private:
  int dim_;
};

absl::Status BroadcastDimOp::Gradient(GradientArgs& g) const {
  g.input_grads[0] = Apply1(std::make_shared<SumDimOp>(dim_), {Dout(g, 0)}).id();
  return g.tracer.status();
}

// dx from (x, out, dy): dy at the first maximum along `dim`.
class MaxDimGradOp final : public Op {
 public:
  explicit MaxDimGradOp(int dim) : dim_(dim) {}
  OpKind kind() const override { return OpKind::kMaxDimGrad; }
  std::string Attributes() const override { return absl::StrCat("dim=", dim_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 3));
    return std::vector<TensorType>{in[0]};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, MaxDimBackward, a.in[0], a.in[1], a.in[2], dim_, a.out[0]);
  }

 private:
  int dim_;
};

class MaxDimOp final : public Op {
 public:
  explicit MaxDimOp(int dim) : dim_(dim) {}
  OpKind kind() const override { return OpKind::kMaxDim; }
  std::string Attributes() const override { return absl::StrCat("dim=", dim_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    STRATA_RETURN_IF_ERROR(CheckDim(name(), in[0], dim_));
    if (in[0].shape.dim(dim_) == 0) {
      return TypeError(name(), "x ", in[0].ToString(), " has no elements along dim ", dim_);
    }
    return std::vector<TensorType>{{Without(in[0].shape, dim_), DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, MaxDim, a.in[0], dim_, a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    return ApplyGradient(g, std::make_shared<MaxDimGradOp>(dim_), {In(g, 0), Out(g, 0), Dout(g, 0)},
                         {0});
  }

 private:
  int dim_;
};

// dx from (y, dy), y the forward's output.
class SoftmaxGradOp final : public Op {
 public:
  explicit SoftmaxGradOp(bool log) : log_(log) {}
  OpKind kind() const override { return log_ ? OpKind::kLogSoftmaxGrad : OpKind::kSoftmaxGrad; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    return std::vector<TensorType>{in[0]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 1}}; }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return log_ ? STRATA_KERNEL(a, LogSoftmaxBackward, a.in[0], a.in[1], a.out[0])
                : STRATA_KERNEL(a, SoftmaxBackward, a.in[0], a.in[1], a.out[0]);
  }

 private:
  bool log_;
};

class SoftmaxOp final : public Op {
 public:
  explicit SoftmaxOp(bool log) : log_(log) {}
  OpKind kind() const override { return log_ ? OpKind::kLogSoftmax : OpKind::kSoftmax; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    if (in[0].shape.rank() < 1) return TypeError(name(), "x ", in[0].ToString(), " is a scalar");
    return std::vector<TensorType>{in[0]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}}; }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return log_ ? STRATA_KERNEL(a, LogSoftmaxForward, a.in[0], a.out[0])
                : STRATA_KERNEL(a, SoftmaxForward, a.in[0], a.out[0]);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    return ApplyGradient(g, std::make_shared<SoftmaxGradOp>(log_), {Out(g, 0), Dout(g, 0)}, {0});
  }

 private:
  bool log_;
};

// The dims to reduce, each in range, from the back if negative, sorted, without repeats; empty
// means all of them.
absl::StatusOr<std::vector<int>> ResolveDims(absl::string_view op, const Var& x,
                                             std::vector<int> dims) {
  const int rank = x.rank();
  if (dims.empty()) {
    for (int d = 0; d < rank; ++d) dims.push_back(d);
  }
  for (int& d : dims) {
    const int given = d;
    if (d < 0) d += rank;
    if (d < 0 || d >= rank) {
      return TypeError(op, "dim ", given, " is out of range for x ", x.type().ToString());
    }
  }
  std::sort(dims.begin(), dims.end());
  if (std::adjacent_find(dims.begin(), dims.end()) != dims.end()) {
    return TypeError(op, "dims {", absl::StrJoin(dims, ", "), "} name a dimension twice");
  }
  return dims;
}

// x reduced over `dims` by one-dimension ops, from the last dim to the first so that the
// remaining indices stay valid; with keepdim, reshaped to size 1 there.
Var ReduceDims(absl::string_view op, Var x, std::vector<int> dims, bool keepdim, bool max) {
  if (!x.valid()) return x;
  absl::StatusOr<std::vector<int>> resolved = ResolveDims(op, x, std::move(dims));
  if (!resolved.ok()) {
    x.tracer()->Fail(resolved.status());
    return Var();
  }
  std::vector<int64_t> kept(x.shape().dims().begin(), x.shape().dims().end());
  Var y = x;
  for (auto d = resolved->rbegin(); d != resolved->rend(); ++d) {
    y = max ? Apply1(std::make_shared<MaxDimOp>(*d), {y}) : Apply1(std::make_shared<SumDimOp>(*d), {y});
    kept[*d] = 1;
  }
  return keepdim ? Reshape(y, Shape(kept)) : y;
}

}  // namespace

Var Sum(Var x, std::vector<int> dims, bool keepdim) {
  return ReduceDims("sum", x, std::move(dims), keepdim, /*max=*/false);
}

Var Mean(Var x, std::vector<int> dims, bool keepdim) {
  if (!x.valid()) return x;
  const Var s = Sum(x, dims, keepdim);
  if (!s.valid()) return s;
  const int64_t count = s.shape().numel() == 0 ? 0 : x.shape().numel() / s.shape().numel();
  return Scale(s, count == 0 ? 0.0f : 1.0f / static_cast<float>(count));
}

Var Max(Var x, int dim, bool keepdim) { return ReduceDims("max", x, {dim}, keepdim, /*max=*/true); }

Var Softmax(Var x) { return Apply1(std::make_shared<SoftmaxOp>(/*log=*/false), {x}); }
Var LogSoftmax(Var x) { return Apply1(std::make_shared<SoftmaxOp>(/*log=*/true), {x}); }

Var MseLoss(Var prediction, Var target) {
  if (prediction.valid() && target.valid() && prediction.shape() != target.shape()) {
    prediction.tracer()->Fail(TypeError("mse_loss", "prediction ", prediction.type().ToString(),
                                        " and target ", target.type().ToString(),
                                        " differ in shape"));
    return Var();
  }
  return Mean(Pow(Sub(prediction, target), 2.0f));
}

// mean(softplus(x) - x y) = mean(-(y log sigmoid(x) + (1 - y) log(1 - sigmoid(x)))), without the
// logs of a saturated sigmoid.
Var BceWithLogitsLoss(Var logits, Var target) {
  if (logits.valid() && target.valid() && logits.shape() != target.shape()) {
    logits.tracer()->Fail(TypeError("bce_with_logits_loss", "logits ", logits.type().ToString(),
                                    " and target ", target.type().ToString(), " differ in shape"));
    return Var();
  }
  return Mean(Sub(Softplus(logits), Mul(logits, target)));
}

}  // namespace strata::graph::ops
