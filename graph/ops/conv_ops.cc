// conv2d and the pooling ops, with their gradients.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::graph::ops {
namespace {

using internal::Dout;
using internal::In;
using internal::TypeError;

size_t ConvWorkspace(const Shape& x, const Shape& w, const cpu::Conv2dParams& p,
                     const StepTarget& target) {
#if STRATA_HAVE_CUDA
  if (target.device.is_cuda()) return cuda::Conv2dWorkspaceBytes(x, w, p);
#endif
  return cpu::Conv2dWorkspaceBytes(x, w, p, target.num_threads);
}

std::string ConvAttributes(const cpu::Conv2dParams& p) {
  return absl::StrCat("stride=", p.stride_h, "x", p.stride_w, " pad=", p.pad_h, "x", p.pad_w,
                      " dilation=", p.dilation_h, "x", p.dilation_w, " groups=", p.groups);
}

// (x, w, dy) -> (dx, dw, db); or, for a convolution whose weight does not train, (w, dy) ->
// (dx, db): x is then not an input, so the forward need not keep it (sparse updates); or, when
// only the first k channels of w train (Note [partial channels]), (x[:, :k], w, dy) -> (dx,
// dw over those channels, db). `x` is the input's type, which the last two forms cannot read from
// their inputs.
class Conv2dGradOp final : public Op {
 public:
  enum class Weight { kWhole, kNone, kChannels };
  Conv2dGradOp(cpu::Conv2dParams p, bool has_bias, Weight weight, TensorType x)
      : p_(p), has_bias_(has_bias), weight_(weight), x_(std::move(x)) {}
  OpKind kind() const override { return OpKind::kConv2dGrad; }
  std::string Attributes() const override {
    return absl::StrCat(ConvAttributes(p_), weight_ == Weight::kNone       ? " no_weight_grad"
                                            : weight_ == Weight::kChannels ? " partial_channels"
                                                                           : "");
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    const bool reads_x = weight_ != Weight::kNone;
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, reads_x ? 3 : 2));
    const TensorType& w = in[reads_x ? 1 : 0];
    std::vector<TensorType> out = {x_};
    if (weight_ == Weight::kWhole) out.push_back(w);
    if (weight_ == Weight::kChannels) out.push_back({PartialWeight(in[0].shape, w.shape), DType::kF32});
    if (has_bias_) out.push_back({Shape{w.shape[0]}, DType::kF32});
    return out;
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    const bool reads_x = weight_ != Weight::kNone;
    const Shape& w = in[reads_x ? 1 : 0].shape;
    size_t bytes = ConvWorkspace(x_.shape, w, p_, target);
    if (weight_ == Weight::kChannels) {
      const Shape& xs = in[0].shape;
      bytes = std::max(bytes,
                       PartialDyBytes(in[2].shape, xs[1]) +
                           ConvWorkspace(xs, PartialWeight(xs, w), PartialParams(xs[1]), target));
    }
    return bytes;
  }
  absl::Status Run(const RunArgs& a) const override {
    switch (weight_) {
      case Weight::kWhole:
        return STRATA_WORKSPACE_KERNEL(a, Conv2dBackward, a.in[0], a.in[1], a.in[2], a.out[0],
                                       a.out[1], has_bias_ ? a.out[2] : Tensor(), p_);
      case Weight::kNone:
        return STRATA_WORKSPACE_KERNEL(a, Conv2dBackward, Tensor(), a.in[0], a.in[1], a.out[0],
                                       Tensor(), has_bias_ ? a.out[1] : Tensor(), p_);
      case Weight::kChannels: return RunChannels(a);
    }
    return absl::InternalError("conv2d_grad: unknown weight mode");
  }
  bool HasCudaKernel() const override { return true; }

 private:
  bool Depthwise() const { return p_.groups > 1; }  // Gradient refuses other grouped forms
  // dw's shape: (O, k, KH, KW), or for a depthwise convolution (k, 1, KH, KW).
  Shape PartialWeight(const Shape& xs, const Shape& w) const {
    return Depthwise() ? Shape{xs[1], 1, w[2], w[3]} : Shape{w[0], xs[1], w[2], w[3]};
  }
  cpu::Conv2dParams PartialParams(int64_t k) const {
    cpu::Conv2dParams p = p_;
    if (Depthwise()) p.groups = static_cast<int>(k);
    return p;
  }
  // A depthwise convolution's dw over k channels reads dy's first k channels, copied to the
  // workspace's start (rounded to 64 bytes, so the convolution's own part stays aligned).
  size_t PartialDyBytes(const Shape& dy, int64_t k) const {
    if (!Depthwise()) return 0;
    const size_t bytes = static_cast<size_t>(dy.numel() / dy[1] * k) * sizeof(float);
    return (bytes + 63) / 64 * 64;
  }
  absl::Status RunChannels(const RunArgs& a) const {
    const Tensor &xs = a.in[0], &dy = a.in[2], &dw = a.out[1];
    STRATA_RETURN_IF_ERROR(STRATA_WORKSPACE_KERNEL(a, Conv2dBackward, Tensor(), a.in[1], dy,
                                                   a.out[0], Tensor(),
                                                   has_bias_ ? a.out[2] : Tensor(), p_));
    if (!dw.defined()) return absl::OkStatus();
    // The weight's values are not read for dw alone: dw stands for its shape.
    const int64_t k = xs.dim(1);
    if (!Depthwise()) {
      return STRATA_WORKSPACE_KERNEL(a, Conv2dBackward, xs, dw, dy, Tensor(), dw, Tensor(), p_);
    }
    const int64_t dy_floats = static_cast<int64_t>(PartialDyBytes(dy.shape(), k) / sizeof(float));
    const Shape dy_k_shape{dy.dim(0), k, dy.dim(2), dy.dim(3)};
    RunArgs rest = a;  // the convolution's part of the workspace, after dy's channels
    Tensor dy_k;
    if (a.cuda != nullptr) {
      const Tensor& w = a.workspace_tensor;
      STRATA_ASSIGN_OR_RETURN(
          dy_k, Tensor::View(w.storage(), dy_k_shape, ContiguousStrides(dy_k_shape), w.offset(),
                             DType::kF32));
      STRATA_ASSIGN_OR_RETURN(rest.workspace_tensor,
                              Tensor::View(w.storage(), Shape{w.numel() - dy_floats}, {1},
                                           w.offset() + dy_floats, DType::kF32));
    } else {
      dy_k = Tensor::Wrap(a.workspace.data(), dy_k_shape, DType::kF32, dy.device());
      rest.workspace = a.workspace.subspan(static_cast<size_t>(dy_floats));
    }
    STRATA_ASSIGN_OR_RETURN(const Tensor head, dy.Slice(1, 0, k));
    STRATA_RETURN_IF_ERROR(STRATA_KERNEL(a, CopyStrided, head, dy_k));
    return STRATA_WORKSPACE_KERNEL(rest, Conv2dBackward, xs, dw, dy_k, Tensor(), dw, Tensor(),
                                   PartialParams(k));
  }

  cpu::Conv2dParams p_;
  bool has_bias_;
  Weight weight_;
  TensorType x_;
};

class Conv2dOp final : public Op {
 public:
  Conv2dOp(cpu::Conv2dParams p, bool has_bias) : p_(p), has_bias_(has_bias) {}
  OpKind kind() const override { return OpKind::kConv2d; }
  std::string Attributes() const override { return ConvAttributes(p_); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, has_bias_ ? 3 : 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "w", in[1]));
    if (in[0].shape.rank() != 4 || in[1].shape.rank() != 4) {
      return TypeError(name(), "x ", in[0].ToString(), " and w ", in[1].ToString(),
                       " must be (N, C, H, W) and (O, C / groups, KH, KW)");
    }
    absl::StatusOr<Shape> y = cpu::Conv2dOutputShape(in[0].shape, in[1].shape, p_);
    if (!y.ok()) return TypeError(name(), y.status().message());
    if (has_bias_ && in[2].shape != Shape{in[1].shape[0]}) {
      return TypeError(name(), "b is ", in[2].ToString(), ", expected [", in[1].shape[0], "]");
    }
    return std::vector<TensorType>{{*y, DType::kF32}};
  }
  size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const override {
    return ConvWorkspace(in[0].shape, in[1].shape, p_, target);
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_WORKSPACE_KERNEL(a, Conv2dForward, a.in[0], a.in[1],
                                   has_bias_ ? a.in[2] : Tensor(), a.out[0], p_);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    using Weight = Conv2dGradOp::Weight;
    const TensorType x = g.tracer.graph().value(g.node.inputs[0]).type;
    const std::vector<int> with_w = has_bias_ ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1};
    if (!g.needs_grad[1]) {  // the weight does not train: no dw, so x is not kept for it
      return internal::ApplyGradient(
          g, std::make_shared<Conv2dGradOp>(p_, has_bias_, Weight::kNone, x),
          {In(g, 1), Dout(g, 0)}, has_bias_ ? std::vector<int>{0, 2} : std::vector<int>{0});
    }
    if (const int64_t k = TrainedChannels(g, 1); k > 0) {  // Note [partial channels]
      const int64_t w_out = g.tracer.graph().value(g.node.inputs[1]).type.shape[0];
      if (p_.groups != 1 && (p_.groups != x.shape[1] || w_out != x.shape[1])) {
        return absl::UnimplementedError(absl::StrCat(
            "training part of a weight's channels needs a convolution with groups 1 or a "
            "depthwise one; this one has groups ", p_.groups, " over ", x.shape[1], " channels"));
      }
      return internal::ApplyGradient(
          g, std::make_shared<Conv2dGradOp>(p_, has_bias_, Weight::kChannels, x),
          {ChannelSlice(g, In(g, 0), 1, k), In(g, 1), Dout(g, 0)}, with_w);
    }
    return internal::ApplyGradient(
        g, std::make_shared<Conv2dGradOp>(p_, has_bias_, Weight::kWhole, x),
        {In(g, 0), In(g, 1), Dout(g, 0)}, with_w);
  }

 private:
  cpu::Conv2dParams p_;
  bool has_bias_;
};

enum class Pool { kMax, kAvg, kGlobalAvg };
OpKind PoolKind(Pool p, bool grad) {
  switch (p) {
    case Pool::kMax: return grad ? OpKind::kMaxPool2dGrad : OpKind::kMaxPool2d;
    case Pool::kAvg: return grad ? OpKind::kAvgPool2dGrad : OpKind::kAvgPool2d;
    case Pool::kGlobalAvg: return grad ? OpKind::kGlobalAvgPoolGrad : OpKind::kGlobalAvgPool;
  }
  return OpKind::kNumOpKinds;  // not reached: every Pool is above
}

// (x, dy) -> dx.
class PoolGradOp final : public Op {
 public:
  PoolGradOp(Pool pool, cpu::Pool2dParams p) : pool_(pool), p_(p) {}
  OpKind kind() const override { return PoolKind(pool_, /*grad=*/true); }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    return std::vector<TensorType>{in[0]};
  }
  absl::Status Run(const RunArgs& a) const override {
    switch (pool_) {
      case Pool::kMax:
        return STRATA_KERNEL(a, MaxPool2dBackward, a.in[0], a.in[1], a.out[0], p_);
      case Pool::kAvg:
        return STRATA_KERNEL(a, AvgPool2dBackward, a.in[1], a.out[0], p_);
      case Pool::kGlobalAvg:
        return STRATA_KERNEL(a, GlobalAvgPoolBackward, a.in[1], a.out[0]);
    }
    return absl::InternalError("unknown pooling");
  }
  bool HasCudaKernel() const override { return true; }

 private:
  Pool pool_;
  cpu::Pool2dParams p_;
};

class PoolOp final : public Op {
 public:
  PoolOp(Pool pool, cpu::Pool2dParams p) : pool_(pool), p_(p) {}
  OpKind kind() const override { return PoolKind(pool_, /*grad=*/false); }
  std::string Attributes() const override {
    if (pool_ == Pool::kGlobalAvg) return "";
    return absl::StrCat("kernel=", p_.kernel_h, "x", p_.kernel_w, " stride=", p_.stride_h, "x",
                        p_.stride_w, " pad=", p_.pad_h, "x", p_.pad_w);
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 1));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "x", in[0]));
    const Shape& x = in[0].shape;
    if (x.rank() != 4) return TypeError(name(), "x is ", in[0].ToString(), ", expected (N, C, H, W)");
    if (pool_ == Pool::kGlobalAvg) return std::vector<TensorType>{{Shape{x[0], x[1]}, DType::kF32}};
    absl::StatusOr<Shape> y = cpu::Pool2dOutputShape(x, p_);
    if (!y.ok()) return TypeError(name(), y.status().message());
    return std::vector<TensorType>{{*y, DType::kF32}};
  }
  absl::Status Run(const RunArgs& a) const override {
    switch (pool_) {
      case Pool::kMax:
        return STRATA_KERNEL(a, MaxPool2dForward, a.in[0], a.out[0], p_);
      case Pool::kAvg:
        return STRATA_KERNEL(a, AvgPool2dForward, a.in[0], a.out[0], p_);
      case Pool::kGlobalAvg:
        return STRATA_KERNEL(a, GlobalAvgPoolForward, a.in[0], a.out[0]);
    }
    return absl::InternalError("unknown pooling");
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Gradient(GradientArgs& g) const override {
    return internal::ApplyGradient(g, std::make_shared<PoolGradOp>(pool_, p_),
                                   {In(g, 0), Dout(g, 0)}, {0});
  }

 private:
  Pool pool_;
  cpu::Pool2dParams p_;
};

}  // namespace

Var Conv2d(Var x, Var w, Var b, const cpu::Conv2dParams& params) {
  const bool has_bias = b.valid();
  std::vector<Var> in = {x, w};
  if (has_bias) in.push_back(b);
  return internal::Apply1(std::make_shared<Conv2dOp>(params, has_bias), in);
}
Var MaxPool2d(Var x, const cpu::Pool2dParams& p) {
  return internal::Apply1(std::make_shared<PoolOp>(Pool::kMax, p), {x});
}
Var AvgPool2d(Var x, const cpu::Pool2dParams& p) {
  return internal::Apply1(std::make_shared<PoolOp>(Pool::kAvg, p), {x});
}
Var GlobalAvgPool(Var x) {
  return internal::Apply1(std::make_shared<PoolOp>(Pool::kGlobalAvg, cpu::Pool2dParams{}), {x});
}

}  // namespace strata::graph::ops
