#include "runtime/cuda/gemm.h"

#include <cublas_v2.h>
#include <library_types.h>

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/gemm_checks.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/gemm_kernel.h"
#include "runtime/status.h"

namespace strata::cuda {
namespace {

// A matrix operand as cuBLAS sees it: device data, a leading dimension, and whether the stored
// (row-major) matrix is the transpose of the logical one.
struct Operand {
  const void* data;
  int64_t ld;
  bool trans;  // relative to the row-major view
};

bool IsGemmDType(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

internal::GemmElem ElemOf(DType d) {
  return d == DType::kBF16  ? internal::GemmElem::kBf16
         : d == DType::kF16 ? internal::GemmElem::kF16
                            : internal::GemmElem::kF32;
}

cudaDataType_t CudaTypeOf(DType d) {
  return d == DType::kBF16 ? CUDA_R_16BF : d == DType::kF16 ? CUDA_R_16F : CUDA_R_32F;
}

// One checked product out = alpha * op(a) @ op(b) + beta * out, ready to run: every argument has
// been validated, nothing has been written.
struct Gemm {
  Operand a, b;
  void* c;
  int64_t ldc;
  bool c_trans;  // out is stored transposed
  int64_t m, n, k;
  int64_t batch;             // 1 for 2-D operands
  int64_t a_bs, b_bs, c_bs;  // batch strides (elements)
  int64_t c_rs, c_cs;        // out's strides, for the K = 0 case
  DType ab_dtype, c_dtype;
};

using cpu::internal::GemmNames;

absl::StatusOr<Gemm> Plan(absl::string_view op, const Tensor& a, const Tensor& b, const Tensor& out,
                          int rank, bool trans_a, bool trans_b, const GemmNames& names = {}) {
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, names.a, a));
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, names.b, b));
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, names.out, out));
  if (!IsGemmDType(a.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", names.a, " is ", a.ToString(),
                                                   ", expected f32, bf16 or f16"));
  }
  STRATA_RETURN_IF_ERROR(CheckDType(op, names.b, b, a.dtype()));
  if (out.dtype() != DType::kF32 && out.dtype() != a.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", names.out, " is ", out.ToString(),
                                                   ", expected f32 or ", DTypeName(a.dtype()),
                                                   " (the type of ", names.a, ")"));
  }
  STRATA_RETURN_IF_ERROR(CheckRank(op, names.a, a, rank));
  STRATA_RETURN_IF_ERROR(CheckRank(op, names.b, b, rank));
  STRATA_RETURN_IF_ERROR(CheckRank(op, names.out, out, rank));
  STRATA_ASSIGN_OR_RETURN(
      const cpu::internal::GemmLayout l,
      cpu::internal::CheckGemmLayout(op, a, b, out, rank, trans_a, trans_b, names));
  Gemm g;
  cpu::internal::SetGemmLayout(l, &g);
  g.a.data = a.raw_data();
  g.b.data = b.raw_data();
  g.c = out.raw_data();
  g.ab_dtype = a.dtype();
  g.c_dtype = out.dtype();
  // cuBLAS takes 32-bit sizes, leading dimensions and batch counts.
  for (const int64_t v : {g.m, g.n, g.k, g.a.ld, g.b.ld, g.ldc, g.batch}) {
    if (v > INT_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": ", names.a, " ", a.ToString(), ", ", names.b, " ", b.ToString(), ", ",
          names.out, " ", out.ToString(), ": a size or leading dimension exceeds 2^31 - 1"));
    }
  }
  return g;
}

// Note [row-major products on column-major cuBLAS]
// A row-major matrix stored with leading dimension ld is, read column-major with the same ld, its
// transpose. So for a row-major out, out^T = op(B)^T op(A)^T is asked of cuBLAS with b first: b
// stored as B (row-major, not transposed) reads as B^T, exactly the first factor (CUBLAS_OP_N);
// b stored as B^T reads as B, which cuBLAS transposes (CUBLAS_OP_T). An out stored transposed
// reads column-major as out itself: then out = op(A) op(B) with a first, each operand transposed
// unless it is stored transposed. k == 0 is done here (out = beta * out), as on the CPU, since
// BLAS implementations differ on it.
absl::Status Run(CUstream_st* stream, CublasHandle* blas, const Gemm& g, float alpha, float beta,
                 GemmPrecision precision, absl::string_view op) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return absl::OkStatus();
  if (g.k == 0) {
    return CudaLaunchStatus(internal::LaunchScaleMatrix(g.c, ElemOf(g.c_dtype), g.batch, g.m,
                                                        g.n, g.c_bs, g.c_rs, g.c_cs, beta, stream),
                            absl::StrCat(op, " (k = 0)"));
  }
  if (blas == nullptr) return absl::InvalidArgumentError(absl::StrCat(op, ": no cuBLAS handle"));
  STRATA_RETURN_IF_ERROR(blas->Bind(stream));
  const Operand& first = g.c_trans ? g.a : g.b;
  const Operand& second = g.c_trans ? g.b : g.a;
  const cublasOperation_t op_first =
      g.c_trans ? (g.a.trans ? CUBLAS_OP_N : CUBLAS_OP_T) : (g.b.trans ? CUBLAS_OP_T : CUBLAS_OP_N);
  const cublasOperation_t op_second =
      g.c_trans ? (g.b.trans ? CUBLAS_OP_N : CUBLAS_OP_T) : (g.a.trans ? CUBLAS_OP_T : CUBLAS_OP_N);
  const int rows = static_cast<int>(g.c_trans ? g.m : g.n);  // of the column-major result
  const int cols = static_cast<int>(g.c_trans ? g.n : g.m);
  const int64_t first_bs = g.c_trans ? g.a_bs : g.b_bs;
  const int64_t second_bs = g.c_trans ? g.b_bs : g.a_bs;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  if (g.ab_dtype == DType::kF32 && precision == GemmPrecision::kTf32) {
    compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  } else if (g.ab_dtype == DType::kF32 && precision == GemmPrecision::kBf16) {
    compute = CUBLAS_COMPUTE_32F_FAST_16BF;
  }
  const cudaDataType_t ab_type = CudaTypeOf(g.ab_dtype);
  const cudaDataType_t c_type = CudaTypeOf(g.c_dtype);
  if (g.batch == 1) {
    return CublasStatus(
        cublasGemmEx(blas->handle(), op_first, op_second, rows, cols, static_cast<int>(g.k), &alpha,
                     first.data, ab_type, static_cast<int>(first.ld), second.data, ab_type,
                     static_cast<int>(second.ld), &beta, g.c, c_type, static_cast<int>(g.ldc),
                     compute, CUBLAS_GEMM_DEFAULT),
        absl::StrCat(op, ": cublasGemmEx"));
  }
  return CublasStatus(
      cublasGemmStridedBatchedEx(
          blas->handle(), op_first, op_second, rows, cols, static_cast<int>(g.k), &alpha,
          first.data, ab_type, static_cast<int>(first.ld), first_bs, second.data, ab_type,
          static_cast<int>(second.ld), second_bs, &beta, g.c, c_type, static_cast<int>(g.ldc),
          g.c_bs, static_cast<int>(g.batch), compute, CUBLAS_GEMM_DEFAULT),
      absl::StrCat(op, ": cublasGemmStridedBatchedEx"));
}

}  // namespace

absl::Status Matmul(CUstream_st* stream, CublasHandle* blas, const Tensor& a, const Tensor& b,
                    const Tensor& out, bool trans_a, bool trans_b, float alpha, float beta,
                    GemmPrecision precision) {
  STRATA_ASSIGN_OR_RETURN(const Gemm g, Plan("Matmul", a, b, out, 2, trans_a, trans_b));
  return Run(stream, blas, g, alpha, beta, precision, "Matmul");
}

absl::Status MatmulAdd(CUstream_st* stream, CublasHandle* blas, const Tensor& a, const Tensor& b,
                       const Tensor& bias, const Tensor& addend, const Tensor& out, bool trans_a,
                       bool trans_b, GemmPrecision precision) {
  constexpr char kOp[] = "MatmulAdd";
  STRATA_ASSIGN_OR_RETURN(const Gemm g, Plan(kOp, a, b, out, 2, trans_a, trans_b));
  if (bias.defined()) {
    STRATA_RETURN_IF_ERROR(CheckOnCuda(kOp, "bias", bias));
    STRATA_RETURN_IF_ERROR(CheckDType(kOp, "bias", bias, out.dtype()));
    STRATA_RETURN_IF_ERROR(CheckContiguous(kOp, "bias", bias));
    STRATA_RETURN_IF_ERROR(CheckShape(kOp, "bias", bias, Shape{g.n}));
  }
  if (addend.defined()) {
    STRATA_RETURN_IF_ERROR(CheckOnCuda(kOp, "addend", addend));
    STRATA_RETURN_IF_ERROR(CheckDType(kOp, "addend", addend, out.dtype()));
    STRATA_RETURN_IF_ERROR(CheckContiguous(kOp, "addend", addend));
    STRATA_RETURN_IF_ERROR(CheckShape(kOp, "addend", addend, out.shape()));
    if (g.c_trans) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": out is ", out.ToString(), ", a transposed view; an addend needs row-major out"));
    }
  }
  if (!bias.defined() && !addend.defined()) return Run(stream, blas, g, 1.0f, 0.0f, precision, kOp);
  if (blas == nullptr && g.k > 0) {  // refused before out is written
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": no cuBLAS handle"));
  }
  // bias + addend into out, then the product added to it (beta = 1): one pass over out, as the
  // CPU kernel's path through OpenBLAS. Element (r, c) of out is at r * c_rs + c * c_cs.
  STRATA_RETURN_IF_ERROR(CudaLaunchStatus(
      internal::LaunchFillBiasAddend(g.c, ElemOf(g.c_dtype), g.m, g.n, g.c_rs, g.c_cs,
                                     bias.defined() ? bias.raw_data() : nullptr,
                                     addend.defined() ? addend.raw_data() : nullptr, stream),
      "MatmulAdd bias and addend"));
  return Run(stream, blas, g, 1.0f, 1.0f, precision, kOp);
}

absl::Status BatchedMatmul(CUstream_st* stream, CublasHandle* blas, const Tensor& a,
                           const Tensor& b, const Tensor& out, bool trans_a, bool trans_b,
                           float alpha, float beta, GemmPrecision precision) {
  STRATA_ASSIGN_OR_RETURN(const Gemm g, Plan("BatchedMatmul", a, b, out, 3, trans_a, trans_b));
  return Run(stream, blas, g, alpha, beta, precision, "BatchedMatmul");
}

absl::Status MatmulBackward(CUstream_st* stream, CublasHandle* blas, const Tensor& a,
                            const Tensor& b, const Tensor& dout, const Tensor& da,
                            const Tensor& db, bool trans_a, bool trans_b,
                            GemmPrecision precision) {
  constexpr char kOp[] = "MatmulBackward";
  Gemm ga{}, gb{};
  STRATA_RETURN_IF_ERROR(
      cpu::internal::PlanMatmulBackward(a, b, dout, da, db, trans_a, trans_b, Plan, &ga, &gb));
  if (da.defined()) STRATA_RETURN_IF_ERROR(Run(stream, blas, ga, 1.0f, 0.0f, precision, kOp));
  if (db.defined()) STRATA_RETURN_IF_ERROR(Run(stream, blas, gb, 1.0f, 0.0f, precision, kOp));
  return absl::OkStatus();
}

}  // namespace strata::cuda
