// Vectorized exp for AVX-512 (16 floats) and AVX2+FMA (8 floats), with the scalar std::exp as
// the portable path, and an AVX-512 reciprocal.
//
//   #ifdef __AVX512F__
//   __m512 e = Exp16(x);     // max relative error ~2e-7 over the float range (Cephes expf)
//   __m512 r = Reciprocal16(d);  // 1 / d without a divide
//   #endif
//   float sum = ExpShiftedSum(row, row, n, row_max);   // softmax numerators in place, and their sum
//
// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two for accuracy),
// exp(r) by a degree-6 polynomial on [-ln2/2, ln2/2]. Inputs above 88.376 are clamped there (the
// result stays finite); inputs below -87.3, where exp is subnormal or 0, give 0 (so exp(-inf) is 0,
// as std::exp's, and a softmax over a row of -inf is 0 / 0 = NaN on every path); NaN gives NaN.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace strata::cpu::internal {

#ifdef __AVX512F__
// GCC 12's unmasked AVX-512 intrinsics pass a self-initialized _mm512_undefined_ps() through,
// which -Wmaybe-uninitialized reports once inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The Cephes polynomial of Exp8 below, on 16 lanes; 2^n by scalef.
inline __m512 Exp16(__m512 x) {
  const __mmask16 nan_mask = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3762626647949f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512 result = _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), _mm512_scalef_ps(p, n));
  return _mm512_mask_mov_ps(result, nan_mask, _mm512_set1_ps(__builtin_nanf("")));
}

// 1 / d to about 1 ulp: the 14-bit estimate and one Newton step. A 512-bit divide issues only
// every 8 to 10 cycles on one port, which bound the GELU kernels; this is 3 cheap uops. Where 1 / d
// is subnormal (d > 2^126) the estimate, and so the result, is 0.
inline __m512 Reciprocal16(__m512 d) {
  const __m512 y = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(y, _mm512_fnmadd_ps(d, y, _mm512_set1_ps(2.0f)));
}

// Horizontal reductions (here, inside the warning suppression above).
inline float HorizontalSum(__m512 v) { return _mm512_reduce_add_ps(v); }
inline float HorizontalMax(__m512 v) { return _mm512_reduce_max_ps(v); }

// Lanes [0, n) set, n in [0, 16].
inline __mmask16 TailMask(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

#endif

#ifdef __AVX2__
inline __m256 Exp8(__m256 x) {
  const __m256 nan_mask = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3762626647949f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 result = _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
  return _mm256_blendv_ps(result, _mm256_set1_ps(__builtin_nanf("")), nan_mask);
}

#endif

// out[i] = exp(x[i] - shift) for i < n (out may be x, or null to only sum); returns the sum.
inline float ExpShiftedSum(const float* x, float* out, int64_t n, float shift) {
  int64_t i = 0;
  float sum = 0.0f;
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();
  const __m512 s = _mm512_set1_ps(shift);
  for (; i < n; i += 16) {
    const __mmask16 live = TailMask(n - i);
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, x + i), s));
    if (out != nullptr) _mm512_mask_storeu_ps(out + i, live, e);
    acc = _mm512_mask_add_ps(acc, live, acc, e);
  }
  sum = HorizontalSum(acc);
#elif defined(__AVX2__)
  __m256 acc = _mm256_setzero_ps();
  const __m256 s = _mm256_set1_ps(shift);
  for (; i + 8 <= n; i += 8) {
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    if (out != nullptr) _mm256_storeu_ps(out + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float l : lanes) sum += l;
#endif
  for (; i < n; ++i) {
    const float e = std::exp(x[i] - shift);
    if (out != nullptr) out[i] = e;
    sum += e;
  }
  return sum;
}

}  // namespace strata::cpu::internal

#ifdef __AVX512F__
#pragma GCC diagnostic pop
#endif
