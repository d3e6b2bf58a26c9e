#include "runtime/cuda/elementwise.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/elementwise_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/elementwise_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace internal {

absl::Status CheckSameShapeAndDType(
    absl::string_view op, std::initializer_list<std::pair<absl::string_view, const Tensor*>> args) {
  return cpu::internal::CheckSameShapeAndDType(CheckOnCuda, op, args);
}

absl::StatusOr<StridedView> ViewOf(absl::string_view op, absl::string_view name, const Tensor& t) {
  StridedView v;
  v.data = t.raw_data();
  v.contiguous = t.is_contiguous();
  if (v.contiguous) return v;
  int rank = 0;
  for (int d = 0; d < t.rank(); ++d) {
    const int64_t n = t.dim(d), s = t.stride(d);
    if (n == 1) continue;
    if (rank > 0 && v.stride[rank - 1] == s * n) {  // steps as one with the dimension outside
      v.size[rank - 1] *= n;
      v.stride[rank - 1] = s;
      continue;
    }
    if (rank == kMaxViewRank) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": ", name, " ", t.ToString(), " is a view of more than ", kMaxViewRank,
          " dimensions that cannot be merged; make it contiguous"));
    }
    v.size[rank] = n;
    v.stride[rank] = s;
    ++rank;
  }
  v.rank = rank;
  return v;
}

}  // namespace internal

namespace {

using internal::CheckSameShapeAndDType;
using internal::ElementwiseOp;
using internal::ElemTypeOf;
using internal::StridedView;
using internal::ViewOf;

// Launches op on the checked tensors `in` (1 or 2) -> out.
absl::Status Map(absl::string_view op_name, ElementwiseOp op,
                 std::initializer_list<std::pair<absl::string_view, const Tensor*>> in,
                 absl::string_view out_name, const Tensor& out, CUstream_st* stream,
                 float alpha = 0.0f, float beta = 0.0f) {
  StridedView views[2];
  int k = 0;
  for (const auto& [name, t] : in) {
    STRATA_ASSIGN_OR_RETURN(views[k], ViewOf(op_name, name, *t));
    ++k;
  }
  STRATA_ASSIGN_OR_RETURN(const StridedView o, ViewOf(op_name, out_name, out));
  return CudaLaunchStatus(internal::LaunchElementwise(op, ElemTypeOf(out), views, o, out.numel(),
                                                      alpha, beta, stream),
                          op_name);
}

absl::Status Binary(absl::string_view op_name, ElementwiseOp op, const Tensor& a, const Tensor& b,
                    const Tensor& out, CUstream_st* stream, float alpha = 0.0f) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(op_name, {{"a", &a}, {"b", &b}, {"out", &out}}));
  return Map(op_name, op, {{"a", &a}, {"b", &b}}, "out", out, stream, alpha);
}

absl::Status Unary(absl::string_view op_name, ElementwiseOp op, const Tensor& x, const Tensor& out,
                   CUstream_st* stream, float alpha = 0.0f, float beta = 0.0f) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(op_name, {{"x", &x}, {"out", &out}}));
  return Map(op_name, op, {{"x", &x}}, "out", out, stream, alpha, beta);
}

// As the CPU kernel's: contiguous x and b, b (C) of x's dtype where x is (..., C), and b on the
// device.
absl::Status CheckBias(absl::string_view op, absl::string_view x_name, const Tensor& x,
                       absl::string_view b_name, const Tensor& b) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, b_name, b));
  return cpu::internal::CheckBias(op, x_name, x, b_name, b);
}

}  // namespace

absl::Status Add(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& out) {
  return Binary("Add", ElementwiseOp::kAdd, a, b, out, stream);
}

absl::Status AddScaled(CUstream_st* stream, const Tensor& a, const Tensor& b, float alpha,
                       const Tensor& out) {
  return Binary("AddScaled", ElementwiseOp::kAddScaled, a, b, out, stream, alpha);
}

absl::Status Mul(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& out) {
  return Binary("Mul", ElementwiseOp::kMul, a, b, out, stream);
}

absl::Status MulBackward(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& dout,
                         const Tensor& da, const Tensor& db) {
  constexpr char kOp[] = "MulBackward";
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(kOp, {{"a", &a}, {"b", &b}, {"dout", &dout}}));
  if (da.defined()) STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(kOp, {{"a", &a}, {"da", &da}}));
  if (db.defined()) STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(kOp, {{"b", &b}, {"db", &db}}));
  // db first: da may alias a, which db needs (the stream runs the two launches in order).
  if (db.defined()) {
    STRATA_RETURN_IF_ERROR(
        Map(kOp, ElementwiseOp::kMul, {{"dout", &dout}, {"a", &a}}, "db", db, stream));
  }
  if (da.defined()) {
    STRATA_RETURN_IF_ERROR(
        Map(kOp, ElementwiseOp::kMul, {{"dout", &dout}, {"b", &b}}, "da", da, stream));
  }
  return absl::OkStatus();
}

absl::Status Scale(CUstream_st* stream, const Tensor& x, float alpha, const Tensor& out) {
  return Unary("Scale", ElementwiseOp::kScale, x, out, stream, alpha);
}

absl::Status Sub(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& out) {
  return Binary("Sub", ElementwiseOp::kSub, a, b, out, stream);
}

absl::Status Div(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& out) {
  return Binary("Div", ElementwiseOp::kDiv, a, b, out, stream);
}

absl::Status ScaleShift(CUstream_st* stream, const Tensor& x, float alpha, float beta,
                        const Tensor& out) {
  return Unary("ScaleShift", ElementwiseOp::kScaleShift, x, out, stream, alpha, beta);
}

absl::Status Pow(CUstream_st* stream, const Tensor& x, float exponent, const Tensor& out) {
  if (exponent == 2.0f) return Unary("Pow", ElementwiseOp::kSquare, x, out, stream);  // exact
  return Unary("Pow", ElementwiseOp::kPow, x, out, stream, exponent);
}

absl::Status Exp(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Unary("Exp", ElementwiseOp::kExp, x, out, stream);
}

absl::Status Log(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Unary("Log", ElementwiseOp::kLog, x, out, stream);
}

absl::Status Sqrt(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Unary("Sqrt", ElementwiseOp::kSqrt, x, out, stream);
}

absl::Status Rsqrt(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  return Unary("Rsqrt", ElementwiseOp::kRsqrt, x, out, stream);
}

absl::Status AddBias(CUstream_st* stream, const Tensor& x, const Tensor& bias, const Tensor& out) {
  constexpr char kOp[] = "AddBias";
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(kOp, {{"x", &x}, {"out", &out}}));
  STRATA_RETURN_IF_ERROR(CheckContiguous(kOp, "out", out));
  STRATA_RETURN_IF_ERROR(CheckBias(kOp, "x", x, "bias", bias));
  const int64_t c = bias.numel(), rows = c ? x.numel() / c : 0;
  return CudaLaunchStatus(internal::LaunchAddBias(ElemTypeOf(x), x.raw_data(), bias.raw_data(),
                                                  out.raw_data(), rows, c, stream),
                          kOp);
}

absl::Status BroadcastRows(CUstream_st* stream, const Tensor& x, const Tensor& out) {
  constexpr char kOp[] = "BroadcastRows";
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(kOp, {{"out", &out}}));
  STRATA_RETURN_IF_ERROR(CheckContiguous(kOp, "out", out));
  STRATA_RETURN_IF_ERROR(CheckBias(kOp, "out", out, "x", x));
  const int64_t c = x.numel(), rows = c ? out.numel() / c : 0;
  return CudaLaunchStatus(internal::LaunchBroadcastRows(static_cast<int>(SizeOf(x.dtype())),
                                                        x.raw_data(), out.raw_data(), rows, c,
                                                        stream),
                          kOp);
}

absl::Status BiasGrad(CUstream_st* stream, const Tensor& dout, const Tensor& dbias,
                      GradMode mode) {
  constexpr char kOp[] = "BiasGrad";
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(kOp, {{"dout", &dout}}));
  STRATA_RETURN_IF_ERROR(CheckBias(kOp, "dout", dout, "dbias", dbias));
  const int64_t c = dbias.numel(), rows = c ? dout.numel() / c : 0;
  return CudaLaunchStatus(
      internal::LaunchBiasGrad(ElemTypeOf(dout), dout.raw_data(), dbias.raw_data(), rows, c,
                               mode == GradMode::kAccumulate, stream),
      kOp);
}

}  // namespace strata::cuda
