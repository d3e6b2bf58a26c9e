// The argument checks of the matrix products (gemm.cc), shared by the CPU kernels and their CUDA
// launchers (Note [one argument check per kernel] in kernel_checks.h). The dtypes (f32 on the CPU;
// f32, bf16 or f16 on CUDA), ranks and devices are the caller's to check first; this checks the
// shapes and strides and describes the operands as a BLAS takes them.
#pragma once

#include <algorithm>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// A matrix operand as a BLAS sees it: a leading dimension, and whether the stored (row-major)
// matrix is the transpose of the logical one.
struct GemmOperand {
  int64_t ld;
  bool trans;  // relative to the row-major view
};

// The last two dims of t, (rows, cols) with strides (rs, cs): row-major when cs == 1, else
// transposed when rs == 1.
inline absl::StatusOr<GemmOperand> DescribeGemmOperand(absl::string_view op, absl::string_view name,
                                                       const Tensor& t) {
  const int64_t rows = t.dim(-2), cols = t.dim(-1), rs = t.stride(-2), cs = t.stride(-1);
  // A BLAS wants ld >= the stored row length even where a size-1 dimension makes it unused.
  if (cs == 1 || cols == 1) return GemmOperand{std::max<int64_t>({rs, cols, 1}), false};
  if (rs == 1 || rows == 1) return GemmOperand{std::max<int64_t>({cs, rows, 1}), true};
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                 ", whose matrix has no unit stride "
                                                 "(call Contiguous)"));
}

// Names of the three operands in error messages (MatmulBackward passes "dout", "da", ...).
struct GemmNames {
  absl::string_view a = "a", b = "b", out = "out";
};

// out = op(a) @ op(b) for operands of rank `rank` (2, or 3 with a leading batch dimension).
struct GemmLayout {
  GemmOperand a, b;  // trans includes trans_a / trans_b
  GemmOperand c;     // trans: out is stored transposed
  int64_t m, n, k;
  int64_t batch;             // 1 for 2-D operands
  int64_t a_bs, b_bs, c_bs;  // batch strides (elements)
  int64_t c_rs, c_cs;        // out's strides, for the K = 0 case
};

// The shapes of a, b and out (already of rank `rank`) agree, out's batch entries are distinct and
// every matrix has a unit stride.
inline absl::StatusOr<GemmLayout> CheckGemmLayout(absl::string_view op, const Tensor& a,
                                                  const Tensor& b, const Tensor& out, int rank,
                                                  bool trans_a, bool trans_b,
                                                  const GemmNames& names) {
  GemmLayout g;
  g.m = trans_a ? a.dim(-1) : a.dim(-2);
  g.k = trans_a ? a.dim(-2) : a.dim(-1);
  const int64_t kb = trans_b ? b.dim(-1) : b.dim(-2);
  g.n = trans_b ? b.dim(-2) : b.dim(-1);
  if (g.k != kb) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": inner dimensions differ: ", names.a, " ",
                                                   a.ToString(), (trans_a ? " (transposed)" : ""),
                                                   " has ", g.k, ", ", names.b, " ", b.ToString(),
                                                   (trans_b ? " (transposed)" : ""), " has ", kb));
  }
  if (rank == 3 && (a.dim(0) != b.dim(0) || out.dim(0) != a.dim(0))) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": batch sizes differ: ", names.a, " ",
                                                   a.ToString(), ", ", names.b, " ", b.ToString(),
                                                   ", ", names.out, " ", out.ToString()));
  }
  if (out.dim(-2) != g.m || out.dim(-1) != g.n) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", names.out, " is ", out.ToString(), ", expected [",
                     rank == 3 ? absl::StrCat(a.dim(0), ", ") : "", g.m, ", ", g.n, "]"));
  }
  if (rank == 3 && out.dim(0) > 1 && out.stride(0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", names.out, " is ", out.ToString(),
                                                   ", whose batch entries all alias one matrix"));
  }
  STRATA_ASSIGN_OR_RETURN(g.a, DescribeGemmOperand(op, names.a, a));
  STRATA_ASSIGN_OR_RETURN(g.b, DescribeGemmOperand(op, names.b, b));
  STRATA_ASSIGN_OR_RETURN(g.c, DescribeGemmOperand(op, names.out, out));
  g.a.trans = g.a.trans != trans_a;
  g.b.trans = g.b.trans != trans_b;
  g.batch = rank == 3 ? a.dim(0) : 1;
  g.a_bs = rank == 3 ? a.stride(0) : 0;
  g.b_bs = rank == 3 ? b.stride(0) : 0;
  g.c_bs = rank == 3 ? out.stride(0) : 0;
  g.c_rs = out.stride(-2);
  g.c_cs = out.stride(-1);
  return g;
}

// Copies l into a device's product description g, whose operands a and b (GemmOperand's ld and
// trans, with the device's data pointer) and out's layout (ldc, c_trans) and sizes are named as
// GemmLayout's; the data pointers are the caller's to set.
template <typename Gemm>
void SetGemmLayout(const GemmLayout& l, Gemm* g) {
  g->a.ld = l.a.ld;
  g->a.trans = l.a.trans;
  g->b.ld = l.b.ld;
  g->b.trans = l.b.trans;
  g->ldc = l.c.ld;
  g->c_trans = l.c.trans;
  g->m = l.m;
  g->n = l.n;
  g->k = l.k;
  g->batch = l.batch;
  g->a_bs = l.a_bs;
  g->b_bs = l.b_bs;
  g->c_bs = l.c_bs;
  g->c_rs = l.c_rs;
  g->c_cs = l.c_cs;
}

// MatmulBackward's checks and its two products' plans: `plan(op, a, b, out, rank, trans_a,
// trans_b, names)` is the device's checked plan (a StatusOr) of out = op(a) @ op(b); *ga is da's,
// *gb is db's, each planned where that gradient is defined.
template <typename Gemm, typename Plan>
absl::Status PlanMatmulBackward(const Tensor& a, const Tensor& b, const Tensor& dout,
                                const Tensor& da, const Tensor& db, bool trans_a, bool trans_b,
                                Plan plan, Gemm* ga, Gemm* gb) {
  constexpr char kOp[] = "MatmulBackward";
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "a", a));
  const int rank = a.rank();
  if (rank != 2 && rank != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": a is ", a.ToString(), ", expected rank 2 or 3 (batched)"));
  }
  // The forward product checks a, b and dout against each other, with no output written.
  STRATA_RETURN_IF_ERROR(
      plan(kOp, a, b, dout, rank, trans_a, trans_b, {"a", "b", "dout"}).status());
  if (dout.dtype() != a.dtype()) {  // the gradients' products take dout as an operand
    STRATA_RETURN_IF_ERROR(CheckDType(kOp, "dout", dout, a.dtype()));
  }
  // out = A B with A = op(a), B = op(b): dA = dout B^T, dB = A^T dout; a stored transposed gets
  // the transpose of its gradient, computed directly as the transposed product.
  if (da.defined()) {
    STRATA_RETURN_IF_ERROR(CheckShape(kOp, "da", da, a.shape()));
    STRATA_ASSIGN_OR_RETURN(
        *ga, !trans_a
                 ? plan(kOp, dout, b, da, rank, false, !trans_b, {"dout", "b", "da"})  // dout B^T
                 : plan(kOp, b, dout, da, rank, trans_b, true, {"b", "dout", "da"}));  // B dout^T
  }
  if (db.defined()) {
    STRATA_RETURN_IF_ERROR(CheckShape(kOp, "db", db, b.shape()));
    STRATA_ASSIGN_OR_RETURN(
        *gb, !trans_b
                 ? plan(kOp, a, dout, db, rank, !trans_a, false, {"a", "dout", "db"})  // A^T dout
                 : plan(kOp, dout, a, db, rank, true, trans_a, {"dout", "a", "db"}));  // dout^T A
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu::internal
