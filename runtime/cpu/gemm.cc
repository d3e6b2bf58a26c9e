#include "runtime/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "cblas.h"
#include "runtime/cpu/internal/gemm_checks.h"
#include "runtime/cpu/internal/sgemm.h"

namespace strata::cpu {
namespace {

// A matrix operand as sgemm sees it: row-major data, a leading dimension, and whether the stored
// matrix is the transpose of the logical one.
struct Operand {
  const float* data;
  int64_t ld;
  bool trans;  // relative to the row-major view
};

// One checked product out = alpha * op(a) @ op(b) + beta * out, ready to run: every argument has
// been validated, nothing has been written.
struct Gemm {
  Operand a, b;
  float* c;
  int64_t ldc;
  bool c_trans;  // out is stored transposed: compute out^T = op(b)^T op(a)^T instead
  int64_t m, n, k;
  int64_t batch;  // 1 for 2-D operands
  int64_t a_bs, b_bs, c_bs;  // batch strides
  int64_t c_rs, c_cs;        // out's strides, for the K = 0 case
};

using internal::GemmNames;

absl::StatusOr<Gemm> Plan(absl::string_view op, const Tensor& a, const Tensor& b, const Tensor& out,
                          int rank, bool trans_a, bool trans_b, const GemmNames& names = {}) {
  STRATA_RETURN_IF_ERROR(CheckDType(op, names.a, a, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckDType(op, names.b, b, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckDType(op, names.out, out, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckRank(op, names.a, a, rank));
  STRATA_RETURN_IF_ERROR(CheckRank(op, names.b, b, rank));
  STRATA_RETURN_IF_ERROR(CheckRank(op, names.out, out, rank));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, names.a, a));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, names.b, b));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, names.out, out));
  STRATA_ASSIGN_OR_RETURN(const internal::GemmLayout l,
                          internal::CheckGemmLayout(op, a, b, out, rank, trans_a, trans_b, names));
  Gemm g;
  internal::SetGemmLayout(l, &g);
  g.a.data = a.data<float>();
  g.b.data = b.data<float>();
  g.c = out.data<float>();
  return g;
}

// g as strata's own sgemm takes it, where that runs it: a 2-D product into a row-major C, beta 0
// or 1 (Note [own sgemm] in internal/sgemm.cc).
std::optional<internal::SgemmArgs> OwnSgemm(const Gemm& g, float alpha, float beta) {
  if (g.batch != 1 || g.c_trans || alpha != 1.0f || (beta != 0.0f && beta != 1.0f)) {
    return std::nullopt;
  }
  internal::SgemmArgs s;
  s.m = g.m;
  s.n = g.n;
  s.k = g.k;
  s.a = g.a.data;
  s.lda = g.a.ld;
  s.trans_a = g.a.trans;
  s.b = g.b.data;
  s.b_rs = g.b.trans ? 1 : g.b.ld;
  s.b_cs = g.b.trans ? g.b.ld : 1;
  s.c = g.c;
  s.ldc = g.ldc;
  s.accumulate = beta == 1.0f;
  if (!internal::SgemmSupports(s)) return std::nullopt;
  return s;
}

// Batch entry i.
void RunOne(const Gemm& g, int64_t i, float alpha, float beta) {
  const float* a = g.a.data + i * g.a_bs;
  const float* b = g.b.data + i * g.b_bs;
  float* c = g.c + i * g.c_bs;
  if (g.k == 0) {  // op(a) @ op(b) is all zeros; sgemm implementations differ on whether
                   // they still scale C by beta, so do it here.
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t col = 0; col < g.n; ++col) {
        float& v = c[r * g.c_rs + col * g.c_cs];
        v = beta == 0.0f ? 0.0f : beta * v;
      }
    return;
  }
  if (!g.c_trans) {
    cblas_sgemm(CblasRowMajor, g.a.trans ? CblasTrans : CblasNoTrans,
                g.b.trans ? CblasTrans : CblasNoTrans, g.m, g.n, g.k, alpha, a, g.a.ld, b,
                g.b.ld, beta, c, g.ldc);
  } else {  // out^T (N, M) = op(b)^T @ op(a)^T
    cblas_sgemm(CblasRowMajor, g.b.trans ? CblasNoTrans : CblasTrans,
                g.a.trans ? CblasNoTrans : CblasTrans, g.n, g.m, g.k, alpha, b, g.b.ld, a,
                g.a.ld, beta, c, g.ldc);
  }
}

// Note [batched sgemm: threads over the batch]
// Measured on the 2-core EPYC (2 threads, OpenBLAS OpenMP build): one single-threaded sgemm per
// thread over the batch beats a loop of 2-thread sgemms at every shape tried, 0.48x the time at
// 96 x (64x64x64), 0.79x at attention's 48 x (256x64x256), still 0.98x at 8 x (256x256x256).
// Only a batch that does not split evenly over the threads loses (3 large products on 2 threads
// take 2 rounds instead of 1.5), so spread the batch unless that imbalance exceeds 10% and the
// matrices are large enough for sgemm to use the threads itself.
void Run(const Gemm& g, float alpha, float beta) {
  if (g.m == 0 || g.n == 0) return;
  if (const auto own = OwnSgemm(g, alpha, beta)) {
    internal::Sgemm(*own);
    return;
  }
  if (g.batch == 1) {
    RunOne(g, 0, alpha, beta);
    return;
  }
  const int64_t threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t rounds = (g.batch + threads - 1) / threads;
  const bool small = g.m * g.n * g.k < (int64_t{1} << 21);
  const bool spread = threads > 1 && (small || rounds * threads * 10 <= g.batch * 11);
#pragma omp parallel for schedule(static) if (spread)
  for (int64_t i = 0; i < g.batch; ++i) RunOne(g, i, alpha, beta);
}

}  // namespace

absl::Status Matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a,
                    bool trans_b, float alpha, float beta) {
  STRATA_ASSIGN_OR_RETURN(const Gemm g, Plan("Matmul", a, b, out, 2, trans_a, trans_b));
  Run(g, alpha, beta);
  return absl::OkStatus();
}

absl::Status MatmulAdd(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& addend,
                       const Tensor& out, bool trans_a, bool trans_b) {
  constexpr char kOp[] = "MatmulAdd";
  STRATA_ASSIGN_OR_RETURN(const Gemm g, Plan(kOp, a, b, out, 2, trans_a, trans_b));
  if (bias.defined()) STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "bias", bias, Shape{g.n}));
  if (addend.defined()) {
    STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "addend", addend, out.shape()));
    if (g.c_trans) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": out is ", out.ToString(), ", a transposed view; an addend needs row-major out"));
    }
  }
  const float* bp = bias.defined() ? bias.data<float>() : nullptr;
  const float* ap = addend.defined() ? addend.data<float>() : nullptr;
  if (auto own = OwnSgemm(g, 1.0f, 0.0f)) {  // the sum starts in the product's registers
    own->bias = bp;
    own->addend = ap;
    own->ld_addend = g.n;
    internal::Sgemm(*own);
    return absl::OkStatus();
  }
  if (bp == nullptr && ap == nullptr) {
    Run(g, 1.0f, 0.0f);
    return absl::OkStatus();
  }
  // Write bias + addend into out, then let sgemm add the product (beta = 1): one pass over out
  // instead of two. Element (r, c) of out is at r * c_rs + c * c_cs.
#pragma omp parallel for schedule(static) if (g.m * g.n > (1 << 15))
  for (int64_t r = 0; r < g.m; ++r) {
    float* row = g.c + r * g.c_rs;
    const float* add = ap != nullptr ? ap + r * g.n : nullptr;
    if (g.c_cs == 1) {
#pragma omp simd
      for (int64_t c = 0; c < g.n; ++c) {
        row[c] = (bp != nullptr ? bp[c] : 0.0f) + (add != nullptr ? add[c] : 0.0f);
      }
    } else {  // a transposed out, which takes no addend
      for (int64_t c = 0; c < g.n; ++c) row[c * g.c_cs] = bp[c];
    }
  }
  Run(g, 1.0f, 1.0f);
  return absl::OkStatus();
}

absl::Status BatchedMatmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a,
                           bool trans_b, float alpha, float beta) {
  STRATA_ASSIGN_OR_RETURN(const Gemm g, Plan("BatchedMatmul", a, b, out, 3, trans_a, trans_b));
  Run(g, alpha, beta);
  return absl::OkStatus();
}

absl::Status MatmulBackward(const Tensor& a, const Tensor& b, const Tensor& dout, const Tensor& da,
                            const Tensor& db, bool trans_a, bool trans_b) {
  Gemm ga{}, gb{};
  STRATA_RETURN_IF_ERROR(
      internal::PlanMatmulBackward(a, b, dout, da, db, trans_a, trans_b, Plan, &ga, &gb));
  if (da.defined()) Run(ga, 1.0f, 0.0f);
  if (db.defined()) Run(gb, 1.0f, 0.0f);
  return absl::OkStatus();
}

}  // namespace strata::cpu
