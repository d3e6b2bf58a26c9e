// linear and its gradient.
#include "absl/strings/str_cat.h"
#include "graph/ops/internal/kernel.h"
#include "graph/ops/internal/op_util.h"
#include "graph/ops/ops.h"

namespace strata::graph::ops {
namespace {

using internal::TypeError;

// dx, dw, db of y = x w^T + b from (x, w, dy); or, for a layer whose weight does not train,
// dx, db from (w, dy): then x is not an input, so the forward need not keep it (sparse updates);
// or, when only the first k input channels of w train (Note [partial channels]), dx, dw[:, :k],
// db from (x[..., :k], w, dy): the forward keeps those channels of x alone; or, where only the sum
// of dx over its rows is read (FoldRowSumsIntoLinearGrad), that sum and db from (w, dy).
class LinearGradOp final : public Op {
 public:
  enum class Weight { kWhole, kNone, kChannels, kRowSum };
  LinearGradOp(bool has_bias, Weight weight) : has_bias_(has_bias), weight_(weight) {}
  OpKind kind() const override { return OpKind::kLinearGrad; }
  std::string Attributes() const override {
    switch (weight_) {
      case Weight::kWhole: return "";
      case Weight::kNone: return "no_weight_grad";
      case Weight::kChannels: return "partial_channels";
      case Weight::kRowSum: return "no_weight_grad row_sum_dx";
    }
    return "";
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    const bool reads_x = weight_ == Weight::kWhole || weight_ == Weight::kChannels;
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, reads_x ? 3 : 2));
    const TensorType& w = in[reads_x ? 1 : 0];
    const TensorType& dy = in[reads_x ? 2 : 1];
    TensorType x = in[0];
    if (weight_ != Weight::kWhole) {  // x's type is dy's shape with w's `in` last
      if (w.shape.rank() != 2 || dy.shape.rank() < 1) {
        return TypeError(name(), "w ", w.ToString(), " and dy ", dy.ToString(),
                         " (expected w (out, in) and dy (..., out))");
      }
      Dims dims(dy.shape.dims().begin(), dy.shape.dims().end());
      dims.back() = w.shape[1];
      x = {Shape(dims), dy.dtype};
    }
    if (weight_ == Weight::kRowSum) x = {Shape{w.shape[1]}, DType::kF32};
    std::vector<TensorType> out = {x};
    if (weight_ == Weight::kWhole) out.push_back(w);
    if (weight_ == Weight::kChannels) {
      const int64_t k = in[0].shape.dim(-1);
      if (k < 1 || k > w.shape[1]) {
        return TypeError(name(), "x's channels ", in[0].ToString(), " do not fit w ", w.ToString());
      }
      out.push_back({Shape{w.shape[0], k}, DType::kF32});
    }
    if (has_bias_) out.push_back({Shape{w.shape[0]}, DType::kF32});
    return out;
  }
  // dx (the input's shape) may overwrite x: LinearBackward computes dw from x first.
  std::vector<std::pair<int, int>> InPlaceOutputs() const override {
    if (weight_ == Weight::kWhole) return {{0, 0}};
    return {};
  }
  absl::Status Run(const RunArgs& a) const override {
    switch (weight_) {
      case Weight::kWhole:
        return STRATA_BLAS_KERNEL(a, LinearBackward, a.in[0], a.in[1], a.in[2], a.out[0], a.out[1],
                                  has_bias_ ? a.out[2] : Tensor(), cpu::GradMode::kOverwrite);
      case Weight::kNone:
        return STRATA_BLAS_KERNEL(a, LinearBackward, Tensor(), a.in[0], a.in[1], a.out[0], Tensor(),
                                  has_bias_ ? a.out[1] : Tensor(), cpu::GradMode::kOverwrite);
      case Weight::kChannels: {
        const Tensor& dw = a.out[1];
        STRATA_RETURN_IF_ERROR(
            STRATA_BLAS_KERNEL(a, LinearBackward, Tensor(), a.in[1], a.in[2], a.out[0], Tensor(),
                               has_bias_ ? a.out[2] : Tensor(), cpu::GradMode::kOverwrite));
        // dw[:, :k] = dy^T x[..., :k]: the weight's values are not read, dw stands for its shape.
        if (!dw.defined()) return absl::OkStatus();
        return STRATA_BLAS_KERNEL(a, LinearBackward, a.in[0], dw, a.in[2], Tensor(), dw, Tensor(),
                                  cpu::GradMode::kOverwrite);
      }
      case Weight::kRowSum: {  // sum_rows(dx) = sum_rows(dy w) = db w
        const Tensor& w = a.in[0];
        STRATA_RETURN_IF_ERROR(STRATA_BLAS_KERNEL(a, LinearBackward, Tensor(), w, a.in[1], Tensor(),
                                                  Tensor(), a.out[1], cpu::GradMode::kOverwrite));
        STRATA_ASSIGN_OR_RETURN(const Tensor db, a.out[1].Reshape({1, w.dim(0)}));
        STRATA_ASSIGN_OR_RETURN(const Tensor dx_sum, a.out[0].Reshape({1, w.dim(1)}));
        return STRATA_BLAS_KERNEL(a, Matmul, db, w, dx_sum, false, false, 1.0f, 0.0f);
      }
    }
    return absl::InternalError("linear_grad: unknown weight mode");
  }
  bool HasCudaKernel() const override { return true; }

  bool has_bias() const { return has_bias_; }
  Weight weight() const { return weight_; }

 private:
  bool has_bias_;
  Weight weight_;
};

class LinearOp final : public Op {
 public:
  explicit LinearOp(bool has_bias) : has_bias_(has_bias) {}
  OpKind kind() const override { return OpKind::kLinear; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, has_bias_ ? 3 : 2));
    for (size_t i = 0; i < in.size(); ++i) {
      STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), i == 0 ? "x" : i == 1 ? "w" : "b", in[i]));
    }
    const Shape& x = in[0].shape;
    const Shape& w = in[1].shape;
    if (w.rank() != 2 || x.rank() < 1 || x.dim(-1) != w[1]) {
      return TypeError(name(), "x ", in[0].ToString(), " does not match w ", in[1].ToString(),
                       " (expected x (..., in) and w (out, in))");
    }
    if (has_bias_ && in[2].shape != Shape{w[0]}) {
      return TypeError(name(), "b is ", in[2].ToString(), ", expected [", w[0], "]");
    }
    Dims dims(x.dims().begin(), x.dims().end());
    dims.back() = w[0];
    return std::vector<TensorType>{{Shape(dims), DType::kF32}};
  }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_BLAS_KERNEL(a, LinearForward, a.in[0], a.in[1], has_bias_ ? a.in[2] : Tensor(),
                              a.out[0], Tensor());
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Gradient(GradientArgs& g) const override {
    using internal::In;
    using Weight = LinearGradOp::Weight;
    const std::vector<int> with_w = has_bias_ ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1};
    if (!g.needs_grad[1]) {  // the weight does not train: no dw, so x is not kept for it
      return internal::ApplyGradient(g, std::make_shared<LinearGradOp>(has_bias_, Weight::kNone),
                                     {In(g, 1), internal::Dout(g, 0)},
                                     has_bias_ ? std::vector<int>{0, 2} : std::vector<int>{0});
    }
    if (const int64_t k = TrainedChannels(g, 1); k > 0) {  // Note [partial channels]
      return internal::ApplyGradient(
          g, std::make_shared<LinearGradOp>(has_bias_, Weight::kChannels),
          {ChannelSlice(g, In(g, 0), -1, k), In(g, 1), internal::Dout(g, 0)}, with_w);
    }
    return internal::ApplyGradient(g, std::make_shared<LinearGradOp>(has_bias_, Weight::kWhole),
                                   {In(g, 0), In(g, 1), internal::Dout(g, 0)}, with_w);
  }

 private:
  bool has_bias_;
};

// r + x w^T + b in one pass over the output (see FuseResidualAdd).
class LinearResidualOpImpl final : public Op {
 public:
  explicit LinearResidualOpImpl(bool has_bias) : has_bias_(has_bias) {}
  OpKind kind() const override { return OpKind::kLinearResidual; }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    const size_t n = has_bias_ ? 4 : 3;
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, n));
    STRATA_ASSIGN_OR_RETURN(std::vector<TensorType> out,
                            LinearOp(has_bias_).Infer(in.subspan(0, n - 1)));
    if (in[n - 1] != out[0]) {
      return TypeError(name(), "the residual is ", in[n - 1].ToString(), ", expected ",
                       out[0].ToString());
    }
    return out;
  }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_BLAS_KERNEL(a, LinearForward, a.in[0], a.in[1], has_bias_ ? a.in[2] : Tensor(),
                              a.out[0], a.in[has_bias_ ? 3 : 2]);
  }
  bool HasCudaKernel() const override { return true; }

 private:
  bool has_bias_;
};

}  // namespace

std::shared_ptr<const Op> LinearGradRowSumOp(const Op& linear_grad) {
  const auto* g = dynamic_cast<const LinearGradOp*>(&linear_grad);
  if (g == nullptr || !g->has_bias() || g->weight() != LinearGradOp::Weight::kNone) return nullptr;
  return std::make_shared<LinearGradOp>(true, LinearGradOp::Weight::kRowSum);
}

std::shared_ptr<const Op> LinearResidualOp(bool has_bias) {
  return std::make_shared<LinearResidualOpImpl>(has_bias);
}

Var Linear(Var x, Var w, Var b) {
  const bool has_bias = b.valid();
  std::vector<Var> in = {x, w};
  if (has_bias) in.push_back(b);
  return internal::Apply1(std::make_shared<LinearOp>(has_bias), in);
}

}  // namespace strata::graph::ops
