#include "runtime/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "cblas.h"
#include "runtime/cpu/internal/attention_checks.h"
#include "runtime/cpu/internal/attention_kernels.h"
#include "runtime/cpu/internal/vec_math.h"

namespace strata::cpu {
namespace {

#ifdef __AVX512F__
// See Note [Attention micro-kernels] (internal/attention_kernels.h). Products run in tiles of
// kTileRows rows; the backward handles kBlock queries at a time, so that dk and dv are read and
// written once per block while their sums run over kBlock rows in registers. Scores, whose
// columns are keys rather than the head dimension, use wider tiles: 8 x 48 ran the forward 6%
// faster than 8 x 32 (fewer loads per FMA).
constexpr int64_t kBlock = 64;
constexpr int64_t kTileRows = 8, kTileVectors = 2, kScoreVectors = 3;
constexpr int64_t kKeyTile = 8, kKeyTileVectors = 2;
static_assert(kBlock % kKeyTile == 0, "key tiles must not straddle a query block's first key");

int64_t Padded(int64_t seq) { return (seq + 15) / 16 * 16; }

// Row stride of the (., T) scratch matrices: T rounded up to an odd multiple of 16 floats, so that
// a column chunk of consecutive rows spreads over all L1 sets.
int64_t RowStride(int64_t seq) { return Padded(seq) | 16; }

// k^T and v^T of one head (D, ld), and the probability and score-gradient blocks (kBlock, ld),
// ld = RowStride(T); the forward uses k^T and the first block.
int64_t PerThreadFloats(int64_t seq, int64_t head_dim) {
  return (2 * head_dim + 2 * kBlock) * RowStride(seq);
}
#else
constexpr int64_t kQueryBlock = 64;

int64_t PerThreadFloats(int64_t seq, int64_t /*head_dim*/) { return 2 * kQueryBlock * seq; }
#endif

// A (T, D) matrix of one (batch, head): base pointer and row stride.
struct HeadMatrix {
  float* data;
  int64_t ld;
};

HeadMatrix Head(const Tensor& t, int64_t b, int64_t h) {
  return {t.data<float>() + b * t.stride(0) + h * t.stride(1), t.stride(2)};
}

// f32 and host-addressable (CheckBhtd checks the strides).
absl::Status CheckF32OnHost(absl::string_view op, absl::string_view name, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckDType(op, name, t, DType::kF32));
  return CheckHostAddressable(op, name, t);
}

absl::Status CheckBhtd(absl::string_view op, absl::string_view name, const Tensor& t,
                       const Tensor& like) {
  return internal::CheckBhtd(CheckF32OnHost, op, name, t, like);
}

absl::Status CheckCommon(absl::string_view op, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& lse, float scale, absl::Span<float> workspace) {
  STRATA_RETURN_IF_ERROR(internal::CheckAttentionQkv(CheckF32OnHost, op, q, k, v));
  STRATA_RETURN_IF_ERROR(
      internal::CheckAttentionLseAndScale(CheckF32Contiguous, op, q, lse, scale));
  const int64_t need = PerThreadFloats(q.dim(2), q.dim(3));
  if (static_cast<int64_t>(workspace.size()) < need) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": workspace of ", workspace.size() * sizeof(float), " bytes is smaller than the ",
        need * sizeof(float), " bytes one thread needs (AttentionWorkspaceBytes)"));
  }
  return absl::OkStatus();
}

// Threads for `units` independent pieces of work.
int Threads(const Tensor& q, int64_t units, absl::Span<float> workspace) {
  const int64_t per = PerThreadFloats(q.dim(2), q.dim(3));
  const int64_t t = std::min<int64_t>({omp_get_max_threads(), units,
                                       static_cast<int64_t>(workspace.size()) / per});
  return static_cast<int>(std::max<int64_t>(t, 1));
}

#ifdef __AVX512F__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see attention_kernels.h
using internal::BroadcastProduct;
using internal::Exp16;
using internal::TailMask;

// Asks for row r (if r < T) of a head matrix to be brought into L2. Each row of a block asks for
// the matching row of the next block, so that few requests are in flight at a time.
void PrefetchRow(const HeadMatrix& m, int64_t r, int64_t T, int64_t D) {
  if (r >= T) return;
  const char* row = reinterpret_cast<const char*>(m.data + r * m.ld);
  for (int64_t b = 0; b < D * static_cast<int64_t>(sizeof(float)); b += 64) {
    _mm_prefetch(row + b, _MM_HINT_T1);
  }
}

// Scores of `rows` queries starting at i0 against the keys each tile of kTileRows of them can see
// (rounded up to 16): c[r, 0:n] = a_r . bt[:, 0:n]. Key chunks run outside the query tiles so
// that a chunk of bt (D x 16 kScoreVectors) is reused from L1 by the whole block.
void Scores(int64_t rows, int64_t i0, int64_t D, const float* a, int64_t lda, const float* bt,
            int64_t ld, float* c) {
  constexpr int64_t kChunk = 16 * kScoreVectors;
  for (int64_t n0 = 0; n0 < Padded(i0 + rows); n0 += kChunk) {
    for (int64_t m0 = 0; m0 < rows; m0 += kTileRows) {
      const int64_t mr = std::min(kTileRows, rows - m0), n = Padded(i0 + m0 + mr);
      if (n0 >= n) continue;
      BroadcastProduct</*kTransA=*/false, kTileRows, kScoreVectors>(
          mr, std::min(kChunk, n - n0), D, a + m0 * lda, lda, bt + n0, ld, c + m0 * ld + n0, ld,
          {});
    }
  }
}

// One head's forward, kBlock queries at a time: the score rows over their visible keys (from
// k^T), the softmax in place, then out = p v scaled by 1 / sum. With keys_ready, ws already holds
// this k^T (the thread's previous head shared its key/value head).
void ForwardHead(const HeadMatrix& qm, const HeadMatrix& km, const HeadMatrix& vm,
                 const HeadMatrix& om, float* lse, int64_t T, int64_t D, float scale, float* ws,
                 bool keys_ready, absl::Span<const HeadMatrix> next) {
  const int64_t ld = RowStride(T);
  float* kt = ws;              // (D, ld)
  float* s = kt + D * ld;      // (kBlock, ld)
  float inv[kBlock];
  if (!keys_ready) internal::TransposeRows(km.data, T, D, km.ld, kt, ld);
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
    const int64_t rows = std::min(kBlock, T - i0);
    Scores(rows, i0, D, qm.data + i0 * qm.ld, qm.ld, kt, ld, s);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = s + r * ld;
      const int64_t visible = i0 + r + 1;
      for (const HeadMatrix* m : {&qm, &om}) PrefetchRow(*m, i0 + r + kBlock, T, D);
      for (const HeadMatrix& m : next) PrefetchRow(m, i0 + r, T, D);
      // Keys the p v product of this row's tile reads.
      const int64_t tile_keys = i0 + std::min(rows, (r / kTileRows + 1) * kTileRows);
      __m512 mx = neg_inf;
      for (int64_t j = 0; j < visible; j += 16) {
        mx = _mm512_mask_max_ps(mx, TailMask(visible - j), mx, _mm512_loadu_ps(row + j));
      }
      const float m = _mm512_reduce_max_ps(mx);
      const __m512 shift = _mm512_set1_ps(-scale * m);
      __m512 sum = _mm512_setzero_ps();
      int64_t j = 0;
      for (; j < visible; j += 16) {
        const __m512 e = _mm512_maskz_mov_ps(
            TailMask(visible - j), Exp16(_mm512_fmadd_ps(_mm512_loadu_ps(row + j), vscale, shift)));
        _mm512_storeu_ps(row + j, e);
        sum = _mm512_add_ps(sum, e);
      }
      for (; j < tile_keys; j += 16) _mm512_storeu_ps(row + j, _mm512_setzero_ps());
      const float total = _mm512_reduce_add_ps(sum);
      inv[r] = 1.0f / total;
      lse[i0 + r] = scale * m + std::log(total);
    }
    for (int64_t m0 = 0; m0 < rows; m0 += kTileRows) {
      const int64_t mr = std::min(kTileRows, rows - m0);
      BroadcastProduct</*kTransA=*/false, kTileRows, kTileVectors>(
          mr, D, i0 + m0 + mr, s + m0 * ld, ld, vm.data, vm.ld, om.data + (i0 + m0) * om.ld, om.ld,
          {false, inv + m0});
    }
  }
}

// One head's backward, kBlock queries at a time: p and dp = dout v^T over the visible keys,
// ds = p (dp - D_i) scale with D_i = sum_j p_j dp_j (= dout_i . out_i), then dq = ds k,
// dv += p^T dout and dk += ds^T q. With shared_kv, an earlier query head of the same key/value
// head ran just before on this thread: ws holds k^T and v^T, and dk and dv hold its sums.
void BackwardHead(const HeadMatrix& qm, const HeadMatrix& km, const HeadMatrix& vm,
                  const HeadMatrix& dom, const HeadMatrix& dqm, const HeadMatrix& dkm,
                  const HeadMatrix& dvm, const float* lse, int64_t T, int64_t D, float scale,
                  float* ws, bool shared_kv, absl::Span<const HeadMatrix> next) {
  const int64_t ld = RowStride(T);
  float* kt = ws;                  // (D, ld)
  float* vt = kt + D * ld;         // (D, ld)
  float* p = vt + D * ld;          // (kBlock, ld)
  float* ds = p + kBlock * ld;     // (kBlock, ld)
  if (!shared_kv) {
    internal::TransposeRows(km.data, T, D, km.ld, kt, ld);
    internal::TransposeRows(vm.data, T, D, vm.ld, vt, ld);
  }
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
    const int64_t rows = std::min(kBlock, T - i0), keys = i0 + rows;
    Scores(rows, i0, D, qm.data + i0 * qm.ld, qm.ld, kt, ld, p);
    Scores(rows, i0, D, dom.data + i0 * dom.ld, dom.ld, vt, ld, ds);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r, visible = i + 1;
      for (const HeadMatrix* m : {&qm, &dom, &dqm, &dkm, &dvm}) PrefetchRow(*m, i + kBlock, T, D);
      for (const HeadMatrix& m : next) PrefetchRow(m, i, T, D);
      const __m512 shift = _mm512_set1_ps(-lse[i]);
      float* prow = p + r * ld;
      float* dsrow = ds + r * ld;
      // p, and D_i = dout_i . out_i computed as sum_j p_j dp_j (out_i = sum_j p_j v_j) from the
      // row in L1: reading out_i instead stalled on a cold row per query.
      __m512 dot = _mm512_setzero_ps();
      int64_t j = 0;
      for (; j < visible; j += 16) {
        const __mmask16 live = TailMask(visible - j);
        const __m512 pj = _mm512_maskz_mov_ps(
            live, Exp16(_mm512_fmadd_ps(_mm512_loadu_ps(prow + j), vscale, shift)));
        _mm512_storeu_ps(prow + j, pj);
        dot = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(live, dsrow + j), dot);
      }
      const __m512 di = _mm512_set1_ps(_mm512_reduce_add_ps(dot));
      for (j = 0; j < visible; j += 16) {  // ds = p (dp - D_i) scale
        _mm512_storeu_ps(dsrow + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(prow + j), vscale),
                                                  _mm512_sub_ps(_mm512_loadu_ps(dsrow + j), di)));
      }
      for (; j < keys; j += 16) {  // the key-tile products below read the whole block
        _mm512_storeu_ps(prow + j, _mm512_setzero_ps());
        _mm512_storeu_ps(dsrow + j, _mm512_setzero_ps());
      }
    }
    for (int64_t m0 = 0; m0 < rows; m0 += kTileRows) {
      const int64_t mr = std::min(kTileRows, rows - m0);
      BroadcastProduct</*kTransA=*/false, kTileRows, kTileVectors>(
          mr, D, i0 + m0 + mr, ds + m0 * ld, ld, km.data, km.ld, dqm.data + (i0 + m0) * dqm.ld,
          dqm.ld, {});
    }
    // Key j gets contributions from rows i >= j only: a key tile starting at j0 >= i0 skips the
    // block's first j0 - i0 rows, and is written rather than accumulated (no earlier block of
    // this head, nor an earlier head, reached it), which also spares zeroing dk and dv.
    for (int64_t j0 = 0; j0 < keys; j0 += kKeyTile) {
      const int64_t jr = std::min(kKeyTile, keys - j0), first = std::max<int64_t>(0, j0 - i0);
      const internal::ProductStore store{/*accumulate=*/shared_kv || j0 < i0, nullptr};
      BroadcastProduct</*kTransA=*/true, kKeyTile, kKeyTileVectors>(
          jr, D, rows - first, p + first * ld + j0, ld, dom.data + (i0 + first) * dom.ld, dom.ld,
          dvm.data + j0 * dvm.ld, dvm.ld, store);
      BroadcastProduct</*kTransA=*/true, kKeyTile, kKeyTileVectors>(
          jr, D, rows - first, ds + first * ld + j0, ld, qm.data + (i0 + first) * qm.ld, qm.ld,
          dkm.data + j0 * dkm.ld, dkm.ld, store);
    }
  }
}

#pragma GCC diagnostic pop

#else  // Portable path: per 64-query block, single-threaded sgemm calls.

void ForwardHead(const HeadMatrix& qm, const HeadMatrix& km, const HeadMatrix& vm,
                 const HeadMatrix& om, float* lse, int64_t T, int64_t D, float scale, float* s,
                 bool /*keys_ready*/, absl::Span<const HeadMatrix> /*next*/) {
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
      lse[i0 + r] = m + std::log(sum);
    }
    // out[i0:i0+rows] = p v[0:keys]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, keys, 1.0f, s, keys,
                vm.data, vm.ld, 0.0f, om.data + i0 * om.ld, om.ld);
  }
}

void BackwardHead(const HeadMatrix& qm, const HeadMatrix& km, const HeadMatrix& vm,
                  const HeadMatrix& dom, const HeadMatrix& dqm, const HeadMatrix& dkm,
                  const HeadMatrix& dvm, const float* row_lse, int64_t T, int64_t D, float scale,
                  float* ws, bool shared_kv, absl::Span<const HeadMatrix> /*next*/) {
  float* p = ws;
  float* dp = p + kQueryBlock * T;
  for (int64_t t = 0; t < T && !shared_kv; ++t) {  // shared: dk, dv hold the group's sums
    std::fill(dkm.data + t * dkm.ld, dkm.data + t * dkm.ld + D, 0.0f);
    std::fill(dvm.data + t * dvm.ld, dvm.data + t * dvm.ld + D, 0.0f);
  }
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
      float di = 0.0f;
#pragma omp simd reduction(+ : di)
      for (int64_t j = 0; j < visible; ++j) di += prow[j] * dprow[j];
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
#endif  // __AVX512F__

// Runs fn(u, next, first, thread) for every unit u < units, each thread over one contiguous
// range, so that it knows its next unit (next, or -1 after its last) and whether u is its first
// (first). The kernels bring the next unit's rows into L2 while they compute this one. Every
// unit costs the same, so the static split loses nothing to imbalance. A head's rows are 256-byte
// runs thousands of bytes apart, which the hardware prefetcher does not follow; in a training
// step, where they arrive cold, attention ran about 30% slower than on warm inputs, and this
// prefetch wins back 3-4%.
template <typename Fn>
void ForEachUnit(int64_t units, int threads, Fn fn) {
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = units * t / nt, end = units * (t + 1) / nt;
    for (int64_t u = begin; u < end; ++u) fn(u, u + 1 < end ? u + 1 : -1, u == begin, t);
  }
}

}  // namespace

size_t AttentionWorkspaceBytes(int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                               int num_threads) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, batch * heads));
  return static_cast<size_t>(threads * PerThreadFloats(seq, head_dim)) * sizeof(float);
}

// Note [grouped-query attention]
// With H_kv key/value heads for H query heads, query head h reads key/value head h / (H / H_kv).
// The forward runs over (batch, query head) units; a thread whose previous unit had the same
// key/value head keeps its k^T. The backward runs over (batch, key/value head) units, each taking
// its H / H_kv query heads in order on one thread, so that their dk and dv sums go to the same
// rows without races, and k^T and v^T are transposed once per group.
absl::Status CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out, const Tensor& lse, float scale,
                                    absl::Span<float> workspace) {
  constexpr char kOp[] = "CausalAttentionForward";
  STRATA_RETURN_IF_ERROR(CheckCommon(kOp, q, k, v, lse, scale, workspace));
  STRATA_RETURN_IF_ERROR(CheckBhtd(kOp, "out", out, q));
  const int64_t B = q.dim(0), H = q.dim(1), T = q.dim(2), D = q.dim(3), G = H / k.dim(1);
  const int threads = Threads(q, B * H, workspace);
  float* lse_p = lse.data<float>();
  ForEachUnit(B * H, threads, [&](int64_t bh, int64_t next, bool first, int64_t thread) {
    const int64_t b = bh / H, h = bh % H, nb = std::max<int64_t>(next, 0) / H,
                  nh = std::max<int64_t>(next, 0) % H;
    const HeadMatrix ahead[] = {Head(q, nb, nh), Head(k, nb, nh / G), Head(v, nb, nh / G),
                                Head(out, nb, nh)};
    ForwardHead(Head(q, b, h), Head(k, b, h / G), Head(v, b, h / G), Head(out, b, h),
                lse_p + bh * T, T, D, scale, workspace.data() + thread * PerThreadFloats(T, D),
                /*keys_ready=*/!first && h % G != 0,
                next >= 0 ? absl::MakeConstSpan(ahead) : absl::Span<const HeadMatrix>());
  });
  return absl::OkStatus();
}

absl::Status CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& lse, const Tensor& dout,
                                     const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                     float scale, absl::Span<float> workspace) {
  constexpr char kOp[] = "CausalAttentionBackward";
  STRATA_RETURN_IF_ERROR(CheckCommon(kOp, q, k, v, lse, scale, workspace));
  STRATA_RETURN_IF_ERROR(
      internal::CheckAttentionGrads(CheckF32OnHost, kOp, q, k, dout, dq, dk, dv));
  const int64_t B = q.dim(0), H = q.dim(1), T = q.dim(2), D = q.dim(3), Hkv = k.dim(1),
                G = H / Hkv;
  const int threads = Threads(q, B * Hkv, workspace);
  const float* lse_p = lse.data<float>();
  ForEachUnit(B * Hkv, threads, [&](int64_t unit, int64_t next, bool, int64_t thread) {
    const int64_t b = unit / Hkv, kh = unit % Hkv, nb = std::max<int64_t>(next, 0) / Hkv,
                  nkh = std::max<int64_t>(next, 0) % Hkv;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kh * G + g;
      // The next query head: of this group, or the first of the thread's next unit.
      const int64_t ab = g + 1 < G ? b : nb, ah = g + 1 < G ? h + 1 : nkh * G,
                    akh = g + 1 < G ? kh : nkh;
      const HeadMatrix ahead[] = {Head(q, ab, ah),    Head(k, ab, akh),  Head(v, ab, akh),
                                  Head(dout, ab, ah), Head(dq, ab, ah),  Head(dk, ab, akh),
                                  Head(dv, ab, akh)};
      BackwardHead(Head(q, b, h), Head(k, b, kh), Head(v, b, kh), Head(dout, b, h),
                   Head(dq, b, h), Head(dk, b, kh), Head(dv, b, kh), lse_p + (b * H + h) * T, T,
                   D, scale, workspace.data() + thread * PerThreadFloats(T, D),
                   /*shared_kv=*/g > 0,
                   next >= 0 || g + 1 < G ? absl::MakeConstSpan(ahead)
                                          : absl::Span<const HeadMatrix>());
    }
  });
  return absl::OkStatus();
}

}  // namespace strata::cpu
