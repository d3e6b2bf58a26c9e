// AVX-512 building blocks of the causal attention kernels (runtime/cpu/attention.cc): one
// register-blocked product and a 16 x 16 transpose. Only compiled with AVX-512F.
//
//   // C[m, 0:n] = sum_k A(m, k) B[k, 0:n] for m < rows, A(m, k) = a[m * lda + k]:
//   BroadcastProduct</*kTransA=*/false, /*kMaxRows=*/8, /*kMaxVectors=*/2>(
//       rows, n, k, a, lda, b, ldb, c, ldc, {});
//   TransposeRows(k_rows, T, D, ld, kt, T_padded);   // kt (D, T_padded) = k^T, zero padded
//
// Note [Attention micro-kernels]
// The products of one (batch, head) are small (T <= a few hundred, D = 64), so general sgemm
// loses most of its time packing operands per call. Every product here has the same shape of
// inner loop instead: a tile of C, kRows rows by kVectors zmm of columns (8 x 2 or, for the
// scores, 8 x 3 in attention.cc: 16 or 24 accumulators), stays in registers while, for each k,
// the B row segment is loaded once (contiguous: a row of v, k, dout, q or of a transposed k / v)
// and A(m, k) is broadcast from memory, so each FMA needs well under one load. No operand is packed: the only reshaping is the
// transpose of k (and v) of one head, once per head, so that S = Q K^T also has contiguous B rows.
// A(m, k) read as a[k * lda + m] (kTransA) gives P^T dO and dS^T Q from the row-major probability
// block without transposing it. Column tails (D not a multiple of 16) use masked loads and stores;
// row tails dispatch to a tile with fewer rows.
#pragma once

#ifdef __AVX512F__

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "runtime/cpu/internal/vec_math.h"

// GCC 12's unmasked AVX-512 intrinsics pass a self-initialized _mm512_undefined_ps() through,
// which -Wmaybe-uninitialized reports once inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace strata::cpu::internal {

// Options of BroadcastProduct's store.
struct ProductStore {
  bool accumulate = false;             // C += product instead of C = product
  const float* row_scale = nullptr;    // C[m, :] = row_scale[m] * product (not with accumulate)
};

// C[m, 0:16 kVectors] (+)= sum_{k < depth} A(m, k) B[k, :] for m < kRows; the last vector's lanes
// are limited by `tail`.
template <int kRows, int kVectors, bool kTransA>
inline void ProductTile(int64_t depth, const float* a, int64_t lda, const float* b, int64_t ldb,
                        float* c, int64_t ldc, __mmask16 tail, ProductStore store) {
  __m512 acc[kRows][kVectors];
#pragma GCC unroll 8
  for (int m = 0; m < kRows; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[m][v] = _mm512_setzero_ps();
  const float* a_row[kRows];
#pragma GCC unroll 8
  for (int m = 0; m < kRows; ++m) a_row[m] = kTransA ? a + m : a + m * lda;
  const int64_t a_step = kTransA ? lda : 1;
  for (int64_t k = 0; k < depth; ++k) {
    __m512 bv[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      bv[v] = v == kVectors - 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v)
                                : _mm512_loadu_ps(b + 16 * v);
    }
#pragma GCC unroll 8
    for (int m = 0; m < kRows; ++m) {
      const __m512 av = _mm512_set1_ps(a_row[m][k * a_step]);
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) acc[m][v] = _mm512_fmadd_ps(av, bv[v], acc[m][v]);
    }
    b += ldb;
  }
#pragma GCC unroll 8
  for (int m = 0; m < kRows; ++m) {
    float* cm = c + m * ldc;
    const __m512 s = _mm512_set1_ps(store.row_scale != nullptr ? store.row_scale[m] : 1.0f);
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      const __mmask16 mask = v == kVectors - 1 ? tail : __mmask16(0xFFFF);
      __m512 r = acc[m][v];
      if (store.accumulate) {
        r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask, cm + 16 * v));
      } else if (store.row_scale != nullptr) {
        r = _mm512_mul_ps(r, s);
      }
      _mm512_mask_storeu_ps(cm + 16 * v, mask, r);
    }
  }
}

using ProductTileFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*,
                               int64_t, __mmask16, ProductStore);

template <int kMaxRows, int kMaxVectors, bool kTransA>
struct ProductTable {
  ProductTileFn fn[kMaxRows][kMaxVectors];
  constexpr ProductTable() : fn{} { Fill<1>(); }
  template <int kRows>
  constexpr void Fill() {
    if constexpr (kRows <= kMaxRows) {
      FillVectors<kRows, 1>();
      Fill<kRows + 1>();
    }
  }
  template <int kRows, int kVectors>
  constexpr void FillVectors() {
    if constexpr (kVectors <= kMaxVectors) {
      fn[kRows - 1][kVectors - 1] = &ProductTile<kRows, kVectors, kTransA>;
      FillVectors<kRows, kVectors + 1>();
    }
  }
};

// C[m, 0:n] (+)= sum_{k < depth} A(m, k) B[k, 0:n] for m < rows, with A(m, k) = a[m * lda + k],
// or a[k * lda + m] when kTransA. Tiles of kMaxRows x 16 kMaxVectors. B rows and C rows must
// be readable over [0, n); nothing past n is written.
template <bool kTransA, int kMaxRows, int kMaxVectors>
inline void BroadcastProduct(int64_t rows, int64_t n, int64_t depth, const float* a, int64_t lda,
                             const float* b, int64_t ldb, float* c, int64_t ldc,
                             ProductStore store) {
  static constexpr ProductTable<kMaxRows, kMaxVectors, kTransA> kTable;
  for (int64_t m0 = 0; m0 < rows; m0 += kMaxRows) {
    const int64_t mr = std::min<int64_t>(kMaxRows, rows - m0);
    const float* am = kTransA ? a + m0 : a + m0 * lda;
    ProductStore s = store;
    if (s.row_scale != nullptr) s.row_scale += m0;
    for (int64_t n0 = 0; n0 < n; n0 += 16 * kMaxVectors) {
      const int64_t cols = std::min<int64_t>(16 * kMaxVectors, n - n0);
      const int64_t vectors = (cols + 15) / 16;
      kTable.fn[mr - 1][vectors - 1](depth, am, lda, b + n0, ldb, c + m0 * ldc + n0, ldc,
                                     TailMask(cols - 16 * (vectors - 1)), s);
    }
  }
}

// dst (cols, ld_dst) = src (rows, cols; row stride ld_src)^T, columns [rows, ld_dst) of dst
// zeroed. ld_dst >= rows.
inline void TransposeRows(const float* src, int64_t rows, int64_t cols, int64_t ld_src,
                          float* dst, int64_t ld_dst) {
  for (int64_t r0 = 0; r0 < ld_dst; r0 += 16) {
    const int64_t nr = std::clamp<int64_t>(rows - r0, 0, 16);
    // The next 16 rows, while these are transposed (the head's rows are usually not cached yet).
    for (int64_t i = r0 + 16; i < std::min(rows, r0 + 32); ++i) {
      for (int64_t c = 0; c < cols; c += 16) {
        _mm_prefetch(reinterpret_cast<const char*>(src + i * ld_src + c), _MM_HINT_T0);
      }
    }
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int64_t nc = std::min<int64_t>(16, cols - c0);
      const __mmask16 cmask = TailMask(nc);
      __m512 t[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        t[i] = i < nr ? _mm512_maskz_loadu_ps(cmask, src + (r0 + i) * ld_src + c0)
                      : _mm512_setzero_ps();
      }
      // 16 x 16 transpose: 32-bit, 64-bit, then 128-bit lane interleaves.
      __m512 u[16];
#pragma GCC unroll 8
      for (int i = 0; i < 16; i += 2) {
        u[i] = _mm512_unpacklo_ps(t[i], t[i + 1]);
        u[i + 1] = _mm512_unpackhi_ps(t[i], t[i + 1]);
      }
#pragma GCC unroll 4
      for (int i = 0; i < 16; i += 4) {
        const __m512d u0 = _mm512_castps_pd(u[i]), u1 = _mm512_castps_pd(u[i + 1]);
        const __m512d u2 = _mm512_castps_pd(u[i + 2]), u3 = _mm512_castps_pd(u[i + 3]);
        t[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(u0, u2));
        t[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(u0, u2));
        t[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(u1, u3));
        t[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(u1, u3));
      }
      // t[4 g + j] holds, in 128-bit lane l, column 4 l + j of rows 4 g .. 4 g + 3.
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m512 a01lo = _mm512_shuffle_f32x4(t[j], t[4 + j], 0x44);   // lanes 0,1 | 0,1
        const __m512 a01hi = _mm512_shuffle_f32x4(t[j], t[4 + j], 0xEE);   // lanes 2,3 | 2,3
        const __m512 a23lo = _mm512_shuffle_f32x4(t[8 + j], t[12 + j], 0x44);
        const __m512 a23hi = _mm512_shuffle_f32x4(t[8 + j], t[12 + j], 0xEE);
        // Column 4 l + j: lane l of t[j], t[4+j], t[8+j], t[12+j].
        u[j] = _mm512_shuffle_f32x4(a01lo, a23lo, 0x88);        // l = 0
        u[4 + j] = _mm512_shuffle_f32x4(a01lo, a23lo, 0xDD);    // l = 1
        u[8 + j] = _mm512_shuffle_f32x4(a01hi, a23hi, 0x88);    // l = 2
        u[12 + j] = _mm512_shuffle_f32x4(a01hi, a23hi, 0xDD);   // l = 3
      }
      const __mmask16 rmask = TailMask(ld_dst - r0);
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        if (i < nc) _mm512_mask_storeu_ps(dst + (c0 + i) * ld_dst + r0, rmask, u[i]);
      }
    }
  }
}

}  // namespace strata::cpu::internal

#pragma GCC diagnostic pop

#endif  // __AVX512F__
