#include "runtime/cuda/linear.h"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/gemm_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

// Defined, on a CUDA device, contiguous, of type `dtype` (or, where `or_f32`, f32 too).
absl::Status CheckCudaContiguous(absl::string_view op, absl::string_view name, const Tensor& t,
                                 DType dtype, bool or_f32) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, name, t));
  if (!(or_f32 && t.dtype() == DType::kF32)) {
    STRATA_RETURN_IF_ERROR(CheckDType(op, name, t, dtype));
  }
  return CheckContiguous(op, name, t);
}

// Views a contiguous (..., last) tensor as a matrix (rows, last).
absl::StatusOr<Tensor> AsMatrix(absl::string_view op, absl::string_view name, const Tensor& t,
                                int64_t last, DType dtype, bool or_f32) {
  STRATA_RETURN_IF_ERROR(CheckCudaContiguous(op, name, t, dtype, or_f32));
  if (t.rank() < 1 || t.dim(-1) != last) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                   ", expected a last dimension of ", last));
  }
  return t.Reshape({-1, last});
}

// w (out, in): f32, bf16 or f16, on a CUDA device, and a matrix cuBLAS can read in place (one
// unit stride, so a transposed view of an (in, out) weight works too). Checked here because the
// launchers write before they call Matmul, which would check it too late.
absl::Status CheckWeight(absl::string_view op, const Tensor& w) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, "w", w));
  if (w.dtype() != DType::kF32 && w.dtype() != DType::kBF16 && w.dtype() != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": w is ", w.ToString(), ", expected f32, bf16 or f16"));
  }
  STRATA_RETURN_IF_ERROR(CheckRank(op, "w", w, 2));
  if (w.stride(0) != 1 && w.stride(1) != 1 && w.dim(0) != 1 && w.dim(1) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": w is ", w.ToString(), ", which has no unit stride (call Contiguous)"));
  }
  return absl::OkStatus();
}

internal::GemmElem ElemOf(DType d) {
  return d == DType::kBF16  ? internal::GemmElem::kBf16
         : d == DType::kF16 ? internal::GemmElem::kF16
                            : internal::GemmElem::kF32;
}

}  // namespace

absl::Status LinearForward(CUstream_st* stream, CublasHandle* blas, const Tensor& x,
                           const Tensor& w, const Tensor& b, const Tensor& y,
                           const Tensor& residual, GemmPrecision precision) {
  constexpr char kOp[] = "LinearForward";
  STRATA_RETURN_IF_ERROR(CheckWeight(kOp, w));
  const int64_t out = w.dim(0), in = w.dim(1);
  STRATA_ASSIGN_OR_RETURN(const Tensor x2, AsMatrix(kOp, "x", x, in, w.dtype(), false));
  STRATA_ASSIGN_OR_RETURN(const Tensor y2, AsMatrix(kOp, "y", y, out, w.dtype(), true));
  if (y2.dim(0) != x2.dim(0)) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": x ", x.ToString(), " and y ",
                                                   y.ToString(), " differ in leading dimensions"));
  }
  if (b.defined()) {
    STRATA_RETURN_IF_ERROR(CheckCudaContiguous(kOp, "b", b, y.dtype(), false));
    STRATA_RETURN_IF_ERROR(CheckShape(kOp, "b", b, Shape{out}));
  }
  Tensor r2;
  if (residual.defined()) {
    STRATA_RETURN_IF_ERROR(CheckCudaContiguous(kOp, "residual", residual, y.dtype(), false));
    STRATA_RETURN_IF_ERROR(CheckShape(kOp, "residual", residual, y.shape()));
    if (residual.raw_data() == y.raw_data()) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": residual is y itself"));
    }
    STRATA_ASSIGN_OR_RETURN(r2, residual.Reshape({-1, out}));
  }
  return MatmulAdd(stream, blas, x2, w, b, r2, y2, false, true, precision);
}

absl::Status LinearBackward(CUstream_st* stream, CublasHandle* blas, const Tensor& x,
                            const Tensor& w, const Tensor& dy, const Tensor& dx, const Tensor& dw,
                            const Tensor& db, GradMode mode, GemmPrecision precision) {
  constexpr char kOp[] = "LinearBackward";
  STRATA_RETURN_IF_ERROR(CheckWeight(kOp, w));
  const int64_t out = w.dim(0), in = w.dim(1);
  const DType type = w.dtype();
  if (dw.defined() && !x.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": dw needs x"));
  }
  STRATA_ASSIGN_OR_RETURN(const Tensor dy2, AsMatrix(kOp, "dy", dy, out, type, false));
  // x (..., in): given, or (without dw, which alone reads it) dy's shape with `in` last.
  Dims x_dims(dy.shape().dims().begin(), dy.shape().dims().end());
  x_dims.back() = in;
  const Shape x_shape = x.defined() ? x.shape() : Shape(x_dims);
  Tensor x2;
  if (x.defined()) {
    STRATA_ASSIGN_OR_RETURN(x2, AsMatrix(kOp, "x", x, in, type, false));
    if (dy2.dim(0) != x2.dim(0)) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": x ", x.ToString(), " and dy ",
                                                     dy.ToString(), " differ in leading dimensions"));
    }
  }
  // Every output is checked before any is written.
  Tensor dx2;
  if (dx.defined()) {
    STRATA_RETURN_IF_ERROR(CheckCudaContiguous(kOp, "dx", dx, type, true));
    STRATA_RETURN_IF_ERROR(CheckShape(kOp, "dx", dx, x_shape));
    STRATA_ASSIGN_OR_RETURN(dx2, dx.Reshape({-1, in}));
  }
  if (dw.defined()) {
    STRATA_RETURN_IF_ERROR(CheckCudaContiguous(kOp, "dw", dw, type, true));
    STRATA_RETURN_IF_ERROR(CheckShape(kOp, "dw", dw, w.shape()));
  }
  if (db.defined()) STRATA_RETURN_IF_ERROR(CheckCudaF32(kOp, "db", db, Shape{out}));

  const bool accumulate = mode == GradMode::kAccumulate;
  // dw before dx: dx may be x's own bytes (an in-place gradient, once x is read for the last time).
  if (dw.defined()) {  // dw (+)= dy^T x
    STRATA_RETURN_IF_ERROR(Matmul(stream, blas, dy2, x2, dw, true, false, 1.0f,
                                  accumulate ? 1.0f : 0.0f, precision));
  }
  if (dx.defined()) {  // dx = dy w
    STRATA_RETURN_IF_ERROR(Matmul(stream, blas, dy2, w, dx2, false, false, 1.0f, 0.0f, precision));
  }
  if (db.defined()) {
    STRATA_RETURN_IF_ERROR(CudaLaunchStatus(
        internal::LaunchColumnSums(dy2.raw_data(), ElemOf(type), dy2.dim(0), out,
                                   db.data<float>(), accumulate, stream),
        "LinearBackward bias gradient"));
  }
  return absl::OkStatus();
}

}  // namespace strata::cuda
