#include "runtime/cpu/gemm.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cblas.h"

namespace strata::cpu {
namespace {

// A matrix operand as sgemm sees it: row-major data, a leading dimension, and whether the stored
// matrix is the transpose of the logical one.
struct Operand {
  const float* data;
  int64_t ld;
  bool trans;  // relative to the row-major view
};

// rows x cols matrix with strides (rs, cs): row-major when cs == 1, else transposed when rs == 1.
absl::StatusOr<Operand> Describe(absl::string_view op, absl::string_view name, const Tensor& t,
                                 int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  // sgemm wants ld >= the stored row length even where a size-1 dimension makes it unused.
  if (cs == 1 || cols == 1) return Operand{t.data<float>(), std::max(rs, cols), false};
  if (rs == 1 || rows == 1) return Operand{t.data<float>(), std::max(cs, rows), true};
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                 ", whose matrix has no unit stride "
                                                 "(call Contiguous)"));
}

absl::Status CheckMatmulShapes(absl::string_view op, const Tensor& a, const Tensor& b,
                               const Tensor& out, int rank, bool trans_a, bool trans_b,
                               int64_t& m, int64_t& n, int64_t& k) {
  STRATA_RETURN_IF_ERROR(CheckDType(op, "a", a, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckDType(op, "b", b, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckDType(op, "out", out, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckRank(op, "a", a, rank));
  STRATA_RETURN_IF_ERROR(CheckRank(op, "b", b, rank));
  STRATA_RETURN_IF_ERROR(CheckRank(op, "out", out, rank));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, "a", a));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, "b", b));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, "out", out));
  m = trans_a ? a.dim(-1) : a.dim(-2);
  k = trans_a ? a.dim(-2) : a.dim(-1);
  const int64_t kb = trans_b ? b.dim(-1) : b.dim(-2);
  n = trans_b ? b.dim(-2) : b.dim(-1);
  if (k != kb) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": inner dimensions differ: a ", a.ToString(), (trans_a ? " (transposed)" : ""),
        " has ", k, ", b ", b.ToString(), (trans_b ? " (transposed)" : ""), " has ", kb));
  }
  if (rank == 3 && (a.dim(0) != b.dim(0) || out.dim(0) != a.dim(0))) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": batch sizes differ: a ", a.ToString(),
                                                   ", b ", b.ToString(), ", out ",
                                                   out.ToString()));
  }
  if (out.dim(-2) != m || out.dim(-1) != n) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": out is ", out.ToString(), ", expected [",
                                                   rank == 3 ? absl::StrCat(a.dim(0), ", ") : "",
                                                   m, ", ", n, "]"));
  }
  return absl::OkStatus();
}

struct Gemm {
  Operand a, b;
  float* c;
  int64_t ldc;
  bool c_trans;  // out is stored transposed: compute out^T = op(b)^T op(a)^T instead
};

absl::StatusOr<Gemm> Plan(absl::string_view op, const Tensor& a, const Tensor& b,
                          const Tensor& out, bool trans_a, bool trans_b) {
  const int r = a.rank();
  Gemm g;
  STRATA_ASSIGN_OR_RETURN(g.a, Describe(op, "a", a, a.dim(-2), a.dim(-1), a.stride(r - 2), a.stride(r - 1)));
  STRATA_ASSIGN_OR_RETURN(g.b, Describe(op, "b", b, b.dim(-2), b.dim(-1), b.stride(r - 2), b.stride(r - 1)));
  STRATA_ASSIGN_OR_RETURN(Operand c, Describe(op, "out", out, out.dim(-2), out.dim(-1),
                                              out.stride(r - 2), out.stride(r - 1)));
  g.a.trans = g.a.trans != trans_a;
  g.b.trans = g.b.trans != trans_b;
  g.c = out.data<float>();
  g.ldc = c.ld;
  g.c_trans = c.trans;
  return g;
}

void Run(const Gemm& g, int64_t a_off, int64_t b_off, int64_t c_off, int64_t m, int64_t n,
         int64_t k, float alpha, float beta) {
  if (m == 0 || n == 0) return;
  if (!g.c_trans) {
    cblas_sgemm(CblasRowMajor, g.a.trans ? CblasTrans : CblasNoTrans,
                g.b.trans ? CblasTrans : CblasNoTrans, m, n, k, alpha, g.a.data + a_off, g.a.ld,
                g.b.data + b_off, g.b.ld, beta, g.c + c_off, g.ldc);
  } else {  // out^T (N, M) = op(b)^T @ op(a)^T
    cblas_sgemm(CblasRowMajor, g.b.trans ? CblasNoTrans : CblasTrans,
                g.a.trans ? CblasNoTrans : CblasTrans, n, m, k, alpha, g.b.data + b_off, g.b.ld,
                g.a.data + a_off, g.a.ld, beta, g.c + c_off, g.ldc);
  }
}

}  // namespace

absl::Status Matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a,
                    bool trans_b, float alpha, float beta) {
  int64_t m, n, k;
  STRATA_RETURN_IF_ERROR(CheckMatmulShapes("Matmul", a, b, out, 2, trans_a, trans_b, m, n, k));
  STRATA_ASSIGN_OR_RETURN(const Gemm g, Plan("Matmul", a, b, out, trans_a, trans_b));
  if (k == 0) return out.Fill(0.0);  // sgemm leaves C untouched (beta * C) when K is 0
  Run(g, 0, 0, 0, m, n, k, alpha, beta);
  return absl::OkStatus();
}

absl::Status BatchedMatmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a,
                           bool trans_b, float alpha, float beta) {
  int64_t m, n, k;
  STRATA_RETURN_IF_ERROR(
      CheckMatmulShapes("BatchedMatmul", a, b, out, 3, trans_a, trans_b, m, n, k));
  STRATA_ASSIGN_OR_RETURN(const Gemm g, Plan("BatchedMatmul", a, b, out, trans_a, trans_b));
  const int64_t batch = a.dim(0);
  if (k == 0) return out.Fill(0.0);
  // Small matrices: one single-threaded sgemm per batch entry, batches spread over threads.
  // Large ones: one multi-threaded sgemm after another.
  const bool parallel_batches = batch > 1 && m * n * k < (1 << 21);
#pragma omp parallel for schedule(static) if (parallel_batches)
  for (int64_t i = 0; i < batch; ++i) {
    Run(g, i * a.stride(0), i * b.stride(0), i * out.stride(0), m, n, k, alpha, beta);
  }
  return absl::OkStatus();
}

absl::Status MatmulBackward(const Tensor& a, const Tensor& b, const Tensor& dout, const Tensor& da,
                            const Tensor& db, bool trans_a, bool trans_b) {
  auto matmul = [&](const Tensor& x, const Tensor& y, const Tensor& z, bool tx, bool ty) {
    return a.rank() == 3 ? BatchedMatmul(x, y, z, tx, ty) : Matmul(x, y, z, tx, ty);
  };
  // out = A B with A = op(a), B = op(b): dA = dout B^T, dB = A^T dout; op^T maps back.
  if (da.defined()) {
    if (!trans_a) STRATA_RETURN_IF_ERROR(matmul(dout, b, da, false, !trans_b));  // da = dout B^T
    else STRATA_RETURN_IF_ERROR(matmul(b, dout, da, trans_b, true));              // da = B dout^T
  }
  if (db.defined()) {
    if (!trans_b) STRATA_RETURN_IF_ERROR(matmul(a, dout, db, !trans_a, false));  // db = A^T dout
    else STRATA_RETURN_IF_ERROR(matmul(dout, a, db, true, trans_a));              // db = dout^T A
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
