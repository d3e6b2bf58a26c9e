#include "runtime/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "cblas.h"
#include "runtime/cpu/internal/vec_math.h"

namespace strata::cpu {
namespace {

constexpr int64_t kQueryBlock = 64;

int64_t PerThreadFloats(int64_t seq) { return 2 * kQueryBlock * seq; }

// A (T, D) matrix of one (batch, head): base pointer and row stride.
struct HeadMatrix {
  float* data;
  int64_t ld;
};

HeadMatrix Head(const Tensor& t, int64_t b, int64_t h) {
  return {t.data<float>() + b * t.stride(0) + h * t.stride(1), t.stride(2)};
}

absl::Status CheckBhtd(absl::string_view op, absl::string_view name, const Tensor& t,
                       const Tensor& like) {
  STRATA_RETURN_IF_ERROR(CheckDType(op, name, t, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, name, t));
  if (t.rank() != 4 || (like.defined() && t.shape() != like.shape())) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                   like.defined() ? absl::StrCat(", expected shape ", like.shape().ToString())
                                                                  : ", expected (B, H, T, D)"));
  }
  if (t.stride(3) != 1 && t.dim(3) > 1) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                   ", whose last dimension (D) must have stride 1"));
  }
  return absl::OkStatus();
}

absl::Status CheckCommon(absl::string_view op, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& out, const Tensor& lse, float scale,
                         absl::Span<float> workspace) {
  STRATA_RETURN_IF_ERROR(CheckBhtd(op, "q", q, Tensor()));
  STRATA_RETURN_IF_ERROR(CheckBhtd(op, "k", k, q));
  STRATA_RETURN_IF_ERROR(CheckBhtd(op, "v", v, q));
  STRATA_RETURN_IF_ERROR(CheckBhtd(op, "out", out, q));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, "lse", lse, Shape{q.dim(0), q.dim(1), q.dim(2)}));
  if (!std::isfinite(scale) || scale <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": scale = ", scale, " must be finite and > 0"));
  }
  const int64_t need = PerThreadFloats(q.dim(2));
  if (static_cast<int64_t>(workspace.size()) < need) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": workspace of ", workspace.size() * sizeof(float), " bytes is smaller than the ",
        need * sizeof(float), " bytes one thread needs (AttentionWorkspaceBytes)"));
  }
  return absl::OkStatus();
}

int Threads(const Tensor& q, absl::Span<float> workspace) {
  const int64_t per = PerThreadFloats(q.dim(2));
  const int64_t t = std::min<int64_t>({omp_get_max_threads(), q.dim(0) * q.dim(1),
                                       static_cast<int64_t>(workspace.size()) / per});
  return static_cast<int>(std::max<int64_t>(t, 1));
}

}  // namespace

size_t AttentionWorkspaceBytes(int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                               int num_threads) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, batch * heads));
  return static_cast<size_t>(threads * PerThreadFloats(seq)) * sizeof(float);
}

absl::Status CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out, const Tensor& lse, float scale,
                                    absl::Span<float> workspace) {
  STRATA_RETURN_IF_ERROR(CheckCommon("CausalAttentionForward", q, k, v, out, lse, scale, workspace));
  const int64_t B = q.dim(0), H = q.dim(1), T = q.dim(2), D = q.dim(3);
  const int threads = Threads(q, workspace);
  float* lse_p = lse.data<float>();
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    float* s = workspace.data() + omp_get_thread_num() * PerThreadFloats(T);
    const HeadMatrix qm = Head(q, b, h), km = Head(k, b, h), vm = Head(v, b, h), om = Head(out, b, h);
    for (int64_t i0 = 0; i0 < T; i0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, T - i0), keys = i0 + rows;
      // s (rows, keys) = scale * q[i0:i0+rows] k[0:keys]^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, D, scale,
                  qm.data + i0 * qm.ld, qm.ld, km.data, km.ld, 0.0f, s, keys);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = s + r * keys;
        const int64_t visible = i0 + r + 1;  // causal: keys 0..i
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; ++j) m = std::max(m, row[j]);
        const float sum = internal::ExpShiftedSum(row, row, visible, m);
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
        std::fill(row + visible, row + keys, 0.0f);
        lse_p[(b * H + h) * T + i0 + r] = m + std::log(sum);
      }
      // out[i0:i0+rows] = p v[0:keys]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, keys, 1.0f, s, keys,
                  vm.data, vm.ld, 0.0f, om.data + i0 * om.ld, om.ld);
    }
  }
  return absl::OkStatus();
}

absl::Status CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& out, const Tensor& lse, const Tensor& dout,
                                     const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                     float scale, absl::Span<float> workspace) {
  constexpr char kOp[] = "CausalAttentionBackward";
  STRATA_RETURN_IF_ERROR(CheckCommon(kOp, q, k, v, out, lse, scale, workspace));
  STRATA_RETURN_IF_ERROR(CheckBhtd(kOp, "dout", dout, q));
  STRATA_RETURN_IF_ERROR(CheckBhtd(kOp, "dq", dq, q));
  STRATA_RETURN_IF_ERROR(CheckBhtd(kOp, "dk", dk, q));
  STRATA_RETURN_IF_ERROR(CheckBhtd(kOp, "dv", dv, q));
  const int64_t B = q.dim(0), H = q.dim(1), T = q.dim(2), D = q.dim(3);
  const int threads = Threads(q, workspace);
  const float* lse_p = lse.data<float>();
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    float* p = workspace.data() + omp_get_thread_num() * PerThreadFloats(T);
    float* dp = p + kQueryBlock * T;
    const HeadMatrix qm = Head(q, b, h), km = Head(k, b, h), vm = Head(v, b, h);
    const HeadMatrix om = Head(out, b, h), dom = Head(dout, b, h);
    const HeadMatrix dqm = Head(dq, b, h), dkm = Head(dk, b, h), dvm = Head(dv, b, h);
    for (int64_t t = 0; t < T; ++t) {
      std::fill(dkm.data + t * dkm.ld, dkm.data + t * dkm.ld + D, 0.0f);
      std::fill(dvm.data + t * dvm.ld, dvm.data + t * dvm.ld + D, 0.0f);
    }
    const float* row_lse = lse_p + (b * H + h) * T;
    for (int64_t i0 = 0; i0 < T; i0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, T - i0), keys = i0 + rows;
      // Recompute p = exp(scale q k^T - lse) on the visible keys.
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, D, scale,
                  qm.data + i0 * qm.ld, qm.ld, km.data, km.ld, 0.0f, p, keys);
      // dp = dout v^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, D, 1.0f,
                  dom.data + i0 * dom.ld, dom.ld, vm.data, vm.ld, 0.0f, dp, keys);
      for (int64_t r = 0; r < rows; ++r) {
        float* prow = p + r * keys;
        float* dprow = dp + r * keys;
        const int64_t visible = i0 + r + 1;
        internal::ExpShiftedSum(prow, prow, visible, row_lse[i0 + r]);
        // D_i = dout_i . out_i, the row sum of p * dp.
        const float* o_i = om.data + (i0 + r) * om.ld;
        const float* do_i = dom.data + (i0 + r) * dom.ld;
        float di = 0.0f;
#pragma omp simd reduction(+ : di)
        for (int64_t d = 0; d < D; ++d) di += o_i[d] * do_i[d];
        // ds = p * (dp - D_i) * scale, stored over dp; masked keys get 0.
#pragma omp simd
        for (int64_t j = 0; j < visible; ++j) dprow[j] = prow[j] * (dprow[j] - di) * scale;
        std::fill(prow + visible, prow + keys, 0.0f);
        std::fill(dprow + visible, dprow + keys, 0.0f);
      }
      // dv[0:keys] += p^T dout_blk; dq_blk = ds k; dk[0:keys] += ds^T q_blk
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, D, rows, 1.0f, p, keys,
                  dom.data + i0 * dom.ld, dom.ld, 1.0f, dvm.data, dvm.ld);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, keys, 1.0f, dp, keys,
                  km.data, km.ld, 0.0f, dqm.data + i0 * dqm.ld, dqm.ld);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, D, rows, 1.0f, dp, keys,
                  qm.data + i0 * qm.ld, qm.ld, 1.0f, dkm.data, dkm.ld);
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
