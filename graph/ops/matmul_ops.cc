// Matrix products for custom models: a @ b with either operand transposed, 2-D or batched.
#include "absl/strings/str_cat.h"
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
using internal::TypeError;

// (da, db) from (a, b, dout).
class MatmulGradOp final : public Op {
 public:
  MatmulGradOp(bool trans_a, bool trans_b) : trans_a_(trans_a), trans_b_(trans_b) {}
  OpKind kind() const override { return OpKind::kMatmulGrad; }
  std::string Attributes() const override {
    return absl::StrCat("trans_a=", trans_a_, " trans_b=", trans_b_);
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 3));
    return std::vector<TensorType>{in[0], in[1]};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return STRATA_BLAS_KERNEL(a, MatmulBackward, a.in[0], a.in[1], a.in[2], a.out[0], a.out[1],
                              trans_a_, trans_b_);
  }

 private:
  bool trans_a_, trans_b_;
};

// op(a) @ op(b): both 2-D, or both 3-D with one batch size.
class MatmulOp final : public Op {
 public:
  MatmulOp(bool trans_a, bool trans_b) : trans_a_(trans_a), trans_b_(trans_b) {}
  OpKind kind() const override { return OpKind::kMatmul; }
  std::string Attributes() const override {
    return absl::StrCat("trans_a=", trans_a_, " trans_b=", trans_b_);
  }
  absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override {
    STRATA_RETURN_IF_ERROR(internal::ExpectInputs(name(), in, 2));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "a", in[0]));
    STRATA_RETURN_IF_ERROR(internal::ExpectF32(name(), "b", in[1]));
    const Shape &a = in[0].shape, &b = in[1].shape;
    const int r = a.rank();
    if ((r != 2 && r != 3) || b.rank() != r || (r == 3 && a.dim(0) != b.dim(0))) {
      return TypeError(name(), "a ", in[0].ToString(), " and b ", in[1].ToString(),
                       " are neither two matrices nor two batches of one size");
    }
    const int64_t m = trans_a_ ? a.dim(-1) : a.dim(-2), ka = trans_a_ ? a.dim(-2) : a.dim(-1);
    const int64_t kb = trans_b_ ? b.dim(-1) : b.dim(-2), n = trans_b_ ? b.dim(-2) : b.dim(-1);
    if (ka != kb) {
      return TypeError(name(), "op(a) of ", in[0].ToString(), " has ", ka, " columns but op(b) of ",
                       in[1].ToString(), " has ", kb, " rows (trans_a ", trans_a_, ", trans_b ",
                       trans_b_, ")");
    }
    return std::vector<TensorType>{
        {r == 2 ? Shape{m, n} : Shape{a.dim(0), m, n}, DType::kF32}};
  }
  bool HasCudaKernel() const override { return true; }
  absl::Status Run(const RunArgs& a) const override {
    return a.in[0].rank() == 2 ? STRATA_BLAS_KERNEL(a, Matmul, a.in[0], a.in[1], a.out[0], trans_a_,
                                                    trans_b_, 1.0f, 0.0f)
                               : STRATA_BLAS_KERNEL(a, BatchedMatmul, a.in[0], a.in[1], a.out[0],
                                                    trans_a_, trans_b_, 1.0f, 0.0f);
  }
  absl::Status Gradient(GradientArgs& g) const override {
    return ApplyGradient(g, std::make_shared<MatmulGradOp>(trans_a_, trans_b_),
                         {In(g, 0), In(g, 1), Dout(g, 0)}, {0, 1});
  }

 private:
  bool trans_a_, trans_b_;
};

}  // namespace

Var Matmul(Var a, Var b, bool trans_a, bool trans_b) {
  // a (..., M, K) @ b (K, N): the leading dimensions of a fold into M.
  if (a.valid() && b.valid() && a.rank() > 2 && b.rank() == 2 && !trans_a) {
    std::vector<int64_t> lead(a.shape().dims().begin(), a.shape().dims().end() - 1);
    const Var flat = Reshape(a, Shape{a.shape().numel() / a.dim(-1), a.dim(-1)});
    const Var out = Apply1(std::make_shared<MatmulOp>(false, trans_b), {flat, b});
    if (!out.valid()) return out;
    lead.push_back(out.dim(-1));
    return Reshape(out, Shape(lead));
  }
  return Apply1(std::make_shared<MatmulOp>(trans_a, trans_b), {a, b});
}

Var BatchedMatmul(Var a, Var b, bool trans_a, bool trans_b) {
  // (..., M, K) @ (..., K, N) with the same leading dimensions: they fold into one batch.
  if (a.valid() && b.valid() && a.rank() > 3 && a.rank() == b.rank()) {
    std::vector<int64_t> lead(a.shape().dims().begin(), a.shape().dims().end() - 2);
    int64_t batch = 1;
    for (int64_t d : lead) batch *= d;
    const Var a3 = Reshape(a, Shape{batch, a.dim(-2), a.dim(-1)});
    const Var b3 = Reshape(b, Shape{batch, b.dim(-2), b.dim(-1)});
    const Var out = Apply1(std::make_shared<MatmulOp>(trans_a, trans_b), {a3, b3});
    if (!out.valid()) return out;
    lead.push_back(out.dim(-2));
    lead.push_back(out.dim(-1));
    return Reshape(out, Shape(lead));
  }
  return Apply1(std::make_shared<MatmulOp>(trans_a, trans_b), {a, b});
}

}  // namespace strata::graph::ops
