// add (with a trailing-dimension broadcast), activations, reshape and the weighted-sum probe.
#include <cstring>

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
using internal::TypeError;

// x (..., tail) viewed as (rows, numel(tail)).
absl::StatusOr<Tensor> AsRows(const Tensor& x, int64_t cols) {
  return x.Reshape({cols ? x.numel() / cols : 0, cols});
}

// dout (..., tail) -> the sum over the leading dimensions, shaped like `tail`.
class SumToOp final : public Op {
 public:
  explicit SumToOp(Shape tail) : tail_(std::move(tail)) {}
  OpKind kind() const override { return OpKind::kSumTo; }
  std::string Attributes() const override { return absl::StrCat("shape=", tail_.ToString()); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    if (!EndsWith(in[0].shape, tail_)) {
      return TypeError(name(), in[0].ToString(), " does not end in ", tail_.ToString());
    }
    return std::vector<TensorType>{{tail_, DType::kF32}};
  }
  absl::Status Run(const RunArgs& a) const override {
    STRATA_ASSIGN_OR_RETURN(const Tensor rows, AsRows(a.in[0], tail_.numel()));
    STRATA_ASSIGN_OR_RETURN(const Tensor flat, a.out[0].Reshape({tail_.numel()}));
    return STRATA_KERNEL(a, BiasGrad, rows, flat);
  }
  bool HasCudaKernel() const override { return true; }

 private:
  Shape tail_;
};

class AddOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kAdd; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "a", in[0]));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "b", in[1]));
    if (!EndsWith(in[0].shape, in[1].shape)) {
      return TypeError(name(), "b ", in[1].ToString(), " is neither the shape of a ",
                       in[0].ToString(), " nor its trailing dimensions");
    }
    return std::vector<TensorType>{in[0]};
  }
  // Elementwise: the sum may overwrite either addend (b only when it is not broadcast, which
  // the planner's equal-size rule ensures).
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}, {0, 1}}; }
  absl::Status Run(const RunArgs& a) const override {
    if (a.in[0].shape() == a.in[1].shape())
      return STRATA_KERNEL(a, Add, a.in[0], a.in[1], a.out[0]);
    const int64_t cols = a.in[1].numel();
    STRATA_ASSIGN_OR_RETURN(const Tensor x, AsRows(a.in[0], cols));
    STRATA_ASSIGN_OR_RETURN(const Tensor y, AsRows(a.out[0], cols));
    STRATA_ASSIGN_OR_RETURN(const Tensor b, a.in[1].Reshape({cols}));
    return STRATA_KERNEL(a, AddBias, x, b, y);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Gradient(GradientArgs& g) const override {
    // d a = d out: the same value, no copy.
    if (g.needs_grad[0]) g.input_grads[0] = g.output_grads[0];
    if (g.needs_grad[1]) {
      const Shape& b = g.tracer.graph().value(g.node.inputs[1]).type.shape;
      const Shape& a = g.tracer.graph().value(g.node.inputs[0]).type.shape;
      g.input_grads[1] = a == b ? g.output_grads[0]
                                : Apply1(std::make_shared<SumToOp>(b), {Dout(g, 0)}).id();
    }
    return g.tracer.status();
  }
};

enum class Activation { kGelu, kRelu, kRelu6, kSigmoid, kTanh, kSilu, kSoftplus, kGeluExact };

// Per activation: its kinds and its kernels (runtime/cpu/activation.h and its CUDA twin), which
// all take the forward input: forward in[0] -> out[0], backward (x, dy) -> dx.
struct ActivationInfo {
  OpKind kind, grad_kind;
  absl::Status (*forward)(const RunArgs& a);
  absl::Status (*backward)(const RunArgs& a);
};

#define STRATA_ACTIVATION(name)                                                            \
  OpKind::k##name, OpKind::k##name##Grad,                                                  \
      [](const RunArgs& a) { return STRATA_KERNEL(a, name##Forward, a.in[0], a.out[0]); }, \
      [](const RunArgs& a) {                                                               \
        return STRATA_KERNEL(a, name##Backward, a.in[0], a.in[1], a.out[0]);               \
      }

const ActivationInfo& Info(Activation a) {
  static const ActivationInfo kInfo[] = {
      {STRATA_ACTIVATION(Gelu)},     {STRATA_ACTIVATION(Relu)},      {STRATA_ACTIVATION(Relu6)},
      {STRATA_ACTIVATION(Sigmoid)},  {STRATA_ACTIVATION(Tanh)},      {STRATA_ACTIVATION(Silu)},
      {STRATA_ACTIVATION(Softplus)}, {STRATA_ACTIVATION(GeluExact)},
  };
  return kInfo[static_cast<int>(a)];
}
#undef STRATA_ACTIVATION

// dx from (x, dy).
class ActivationGradOp final : public Op {
 public:
  explicit ActivationGradOp(Activation activation) : activation_(activation) {}
  OpKind kind() const override { return Info(activation_).grad_kind; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    return std::vector<TensorType>{in[0]};
  }
  // Elementwise: dx may overwrite dy or x.
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 1}, {0, 0}}; }
  absl::Status Run(const RunArgs& a) const override { return Info(activation_).backward(a); }
  bool HasCudaKernel() const override { return true; }

 private:
  Activation activation_;
};

class ActivationOp final : public Op {
 public:
  explicit ActivationOp(Activation activation) : activation_(activation) {}
  OpKind kind() const override { return Info(activation_).kind; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    return std::vector<TensorType>{in[0]};
  }
  // The output may overwrite x where nothing reads x later: a frozen layer's forward, whose
  // gradient (if any) does not need x (the kernels read each element before writing it).
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 0}}; }
  absl::Status Run(const RunArgs& a) const override { return Info(activation_).forward(a); }
  bool HasCudaKernel() const override { return true; }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<ActivationGradOp>(activation_),
                                   {In(g, 0), Dout(g, 0)}, {0});
  }

 private:
  Activation activation_;
};

// x -> u8 mask of 0 < x < upper (SaveReluMasks).
class ReluMaskOp final : public Op {
 public:
  explicit ReluMaskOp(float upper) : upper_(upper) {}
  OpKind kind() const override { return OpKind::kReluMask; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    return std::vector<TensorType>{{in[0].shape, DType::kU8}};
  }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, ReluMask, a.in[0], upper_, a.out[0]);
  }
  bool HasCudaKernel() const override { return true; }

 private:
  float upper_;
};

// (mask, dy) -> dx = dy where mask, else 0.
class MaskedGradOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kMaskedGrad; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "dy", in[1]));
    if (in[0] != TensorType{in[1].shape, DType::kU8}) {
      return TypeError(name(), "mask is ", in[0].ToString(), ", expected u8 of dy's shape ",
                       in[1].shape.ToString());
    }
    return std::vector<TensorType>{in[1]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 1}}; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, MaskedBackward, a.in[0], a.in[1], a.out[0]);
  }
  bool HasCudaKernel() const override { return true; }
};

// (gate, up, dy) -> (dgate, dup).
class SwiGluGradOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kSwiGluGrad; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 3));
    return std::vector<TensorType>{in[0], in[0]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{1, 2}}; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, SwiGluBackward, a.in[0], a.in[1], a.in[2], a.out[0], a.out[1]);
  }
  bool HasCudaKernel() const override { return true; }
};

// (gate, up) -> silu(gate) * up, one pass where Silu then Mul take two and keep silu(gate).
class SwiGluOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kSwiGlu; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "gate", in[0]));
    if (in[1] != in[0]) {
      return TypeError(name(), "up is ", in[1].ToString(), ", expected gate's ", in[0].ToString());
    }
    return std::vector<TensorType>{in[0]};
  }
  std::vector<std::pair<int, int>> InPlaceOutputs() const override { return {{0, 1}, {0, 0}}; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, SwiGluForward, a.in[0], a.in[1], a.out[0]);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<SwiGluGradOp>(), {In(g, 0), In(g, 1), Dout(g, 0)},
                                   {0, 1});
  }
};

class ReshapeOp final : public Op {
 public:
  explicit ReshapeOp(Shape shape) : shape_(std::move(shape)) {}
  OpKind kind() const override { return OpKind::kReshape; }
  std::string Attributes() const override { return absl::StrCat("shape=", shape_.ToString()); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    if (in[0].shape.numel() != shape_.numel()) {
      return TypeError(name(), "cannot reshape ", in[0].ToString(), " to ", shape_.ToString());
    }
    return std::vector<TensorType>{{shape_, in[0].dtype}};
  }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_KERNEL(a, ReshapeCopy, a.in[0], a.out[0]);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Gradient(GradientArgs& g) const override {
    const Shape& x = g.tracer.graph().value(g.node.inputs[0]).type.shape;
    g.input_grads[0] = Apply1(std::make_shared<ReshapeOp>(x), {Dout(g, 0)}).id();
    return g.tracer.status();
  }

 private:
  Shape shape_;
};

// out = dloss * w, the gradient of WeightedSum.
class ScaleByScalarOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kScaleByScalar; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    return std::vector<TensorType>{in[0]};
  }
  absl::Status Run(const RunArgs& a) const override {
    return cpu::Scale(a.in[0], a.in[1].data<float>()[0], a.out[0]);
  }
};

class WeightedSumOp final : public Op {
 public:
  OpKind kind() const override { return OpKind::kWeightedSum; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    if (!(in[0] == in[1])) {
      return TypeError(name(), "weights ", in[1].ToString(), " differ from x ", in[0].ToString());
    }
    return std::vector<TensorType>{{Shape{}, DType::kF32}};
  }
  absl::Status Run(const RunArgs& a) const override {
    const float* x = a.in[0].data<float>();
    const float* w = a.in[1].data<float>();
    double sum = 0;
    const int64_t n = a.in[0].numel();
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * w[i];
    a.out[0].data<float>()[0] = static_cast<float>(sum);
    return absl::OkStatus();
  }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<ScaleByScalarOp>(),
                                   {In(g, 1), Dout(g, 0)}, {0});
  }
};

}  // namespace

Var Add(Var a, Var b) { return Apply1(std::make_shared<AddOp>(), {a, b}); }
Var Gelu(Var x) { return Apply1(std::make_shared<ActivationOp>(Activation::kGelu), {x}); }
Var Relu(Var x) { return Apply1(std::make_shared<ActivationOp>(Activation::kRelu), {x}); }
Var Relu6(Var x) { return Apply1(std::make_shared<ActivationOp>(Activation::kRelu6), {x}); }
Var Sigmoid(Var x) { return Apply1(std::make_shared<ActivationOp>(Activation::kSigmoid), {x}); }
Var Tanh(Var x) { return Apply1(std::make_shared<ActivationOp>(Activation::kTanh), {x}); }
Var Silu(Var x) { return Apply1(std::make_shared<ActivationOp>(Activation::kSilu), {x}); }
Var Softplus(Var x) { return Apply1(std::make_shared<ActivationOp>(Activation::kSoftplus), {x}); }
Var GeluExact(Var x) {
  return Apply1(std::make_shared<ActivationOp>(Activation::kGeluExact), {x});
}
std::shared_ptr<const Op> ReluMaskOp(float upper) {
  return std::make_shared<class ReluMaskOp>(upper);
}
std::shared_ptr<const Op> MaskedGradOp() { return std::make_shared<class MaskedGradOp>(); }
Var SwiGlu(Var gate, Var up) { return Apply1(std::make_shared<SwiGluOp>(), {gate, up}); }
Var Reshape(Var x, const Shape& shape) { return Apply1(std::make_shared<ReshapeOp>(shape), {x}); }
Var SumTo(Var x, const Shape& tail) { return Apply1(std::make_shared<SumToOp>(tail), {x}); }
Var WeightedSum(Var x, Var weights) {
  return Apply1(std::make_shared<WeightedSumOp>(), {x, weights});
}

}  // namespace strata::graph::ops
