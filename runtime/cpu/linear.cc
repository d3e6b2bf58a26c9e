#include "runtime/cpu/linear.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/internal/column_sums.h"

namespace strata::cpu {
namespace {

// Views a contiguous (..., last) tensor as a matrix (rows, last).
absl::StatusOr<Tensor> AsMatrix(absl::string_view op, absl::string_view name, const Tensor& t,
                                int64_t last) {
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, name, t));
  if (t.rank() < 1 || t.dim(-1) != last) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                   ", expected a last dimension of ", last));
  }
  return t.Reshape({-1, last});
}

// w (out, in): f32, on the host, and a matrix sgemm can read in place (one unit stride, so a
// transposed view of an (in, out) weight works too). Checked here because the kernels write
// before they call Matmul, which would check it too late.
absl::Status CheckWeight(absl::string_view op, const Tensor& w) {
  STRATA_RETURN_IF_ERROR(CheckDType(op, "w", w, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckRank(op, "w", w, 2));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, "w", w));
  if (w.stride(0) != 1 && w.stride(1) != 1 && w.dim(0) != 1 && w.dim(1) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": w is ", w.ToString(), ", which has no unit stride (call Contiguous)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LinearForward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                           const Tensor& residual) {
  constexpr char kOp[] = "LinearForward";
  STRATA_RETURN_IF_ERROR(CheckWeight(kOp, w));
  const int64_t out = w.dim(0), in = w.dim(1);
  STRATA_ASSIGN_OR_RETURN(const Tensor x2, AsMatrix(kOp, "x", x, in));
  STRATA_ASSIGN_OR_RETURN(const Tensor y2, AsMatrix(kOp, "y", y, out));
  if (y2.dim(0) != x2.dim(0)) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": x ", x.ToString(), " and y ",
                                                   y.ToString(), " differ in leading dimensions"));
  }
  if (b.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "b", b, Shape{out}));
  if (residual.defined()) {
    STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "residual", residual, y.shape()));
    if (residual.data<float>() == y.data<float>()) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": residual is y itself"));
    }
  }
  Tensor r2;
  if (residual.defined()) {
    STRATA_ASSIGN_OR_RETURN(r2, residual.Reshape({-1, out}));
  }
  return MatmulAdd(x2, w, b, r2, y2, false, true);
}

absl::Status LinearBackward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor& dx,
                            const Tensor& dw, const Tensor& db, GradMode mode) {
  constexpr char kOp[] = "LinearBackward";
  STRATA_RETURN_IF_ERROR(CheckWeight(kOp, w));
  const int64_t out = w.dim(0), in = w.dim(1);
  if (dw.defined() && !x.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": dw needs x"));
  }
  STRATA_ASSIGN_OR_RETURN(const Tensor dy2, AsMatrix(kOp, "dy", dy, out));
  // x (..., in): given, or (without dw, which alone reads it) dy's shape with `in` last.
  Dims x_dims(dy.shape().dims().begin(), dy.shape().dims().end());
  x_dims.back() = in;
  const Shape x_shape = x.defined() ? x.shape() : Shape(x_dims);
  Tensor x2;
  if (x.defined()) {
    STRATA_ASSIGN_OR_RETURN(x2, AsMatrix(kOp, "x", x, in));
    if (dy2.dim(0) != x2.dim(0)) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": x ", x.ToString(), " and dy ",
                                                     dy.ToString(), " differ in leading dimensions"));
    }
  }
  // Every output is checked before any is written.
  Tensor dx2;
  if (dx.defined()) {
    STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "dx", dx, x_shape));
    STRATA_ASSIGN_OR_RETURN(dx2, AsMatrix(kOp, "dx", dx, in));
  }
  if (dw.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "dw", dw, w.shape()));
  if (db.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "db", db, Shape{out}));

  const bool accumulate = mode == GradMode::kAccumulate;
  // dw before dx: dx may be x's own bytes (an in-place gradient, once x is read for the last time).
  if (dw.defined()) {  // dw (+)= dy^T x
    STRATA_RETURN_IF_ERROR(Matmul(dy2, x2, dw, true, false, 1.0f, accumulate ? 1.0f : 0.0f));
  }
  if (dx.defined()) STRATA_RETURN_IF_ERROR(Matmul(dy2, w, dx2));  // dx = dy w
  if (db.defined()) {
    internal::ColumnSums(dy2.data<float>(), dy2.dim(0), out, db.data<float>(), accumulate);
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
