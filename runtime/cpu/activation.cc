#include "runtime/cpu/activation.h"

#include <algorithm>
#include <cmath>

#include "runtime/cpu/internal/elementwise_loop.h"
#include "runtime/cpu/internal/vec_math.h"

namespace strata::cpu {
namespace {

using internal::CheckSameShapeAndDType;
using internal::MapElements;

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
constexpr float kMaxExpArg = 88.0f;  // exp stays finite

// Note [GELU as a sigmoid]: 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)). Written this
// way there is no cancellation in 1 + tanh(u) for negative u, so the far-negative tail keeps full
// relative precision (tanh form: errors of 1e-3 relative at x = -4).
inline float GeluScalar(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return x / (1.0f + std::exp(std::min(-2.0f * u, kMaxExpArg)));
}

// d/dx x s(2u) = s + x s (1 - s) 2 u', with 1 - s = exp(-2u) s.
inline float GeluGradScalar(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float e = std::exp(std::min(-2.0f * u, kMaxExpArg));  // finite, so e * s is too
  const float s = 1.0f / (1.0f + e);
  return s + x * s * (e * s) * 2.0f * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
}

#if defined(__AVX512F__) || defined(__AVX2__)  // the vector paths' precondition
bool AllContiguousF32(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->dtype() != DType::kF32 || !t->is_contiguous()) return false;
  }
  return true;
}
#endif

#ifdef __AVX512F__
// Runs vec16(i, live) on blocks of 16 elements in parallel; `live` masks the last block's tail.
template <typename Vec16>
void ForBlocks16(int64_t n, Vec16 vec16) {
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for schedule(static) if (n > internal::kParallelThreshold)
  for (int64_t b = 0; b < blocks; ++b) vec16(b * 16, internal::TailMask(n - b * 16));
}

// x s(2u) and its derivative s + x s (e s) u' with e = exp(-2u), s = 1 / (1 + e); see Note [GELU
// as a sigmoid].
inline __m512 Gelu16(__m512 v) {
  const __m512 u = _mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi),
                                 _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(kGeluCubic), v),
                                                 _mm512_mul_ps(v, v), v));
  const __m512 e = internal::Exp16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u));
  return _mm512_mul_ps(v, internal::Reciprocal16(_mm512_add_ps(_mm512_set1_ps(1.0f), e)));
}

inline __m512 GeluGrad16(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 v2 = _mm512_mul_ps(v, v);
  const __m512 u = _mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi),
                                 _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(kGeluCubic), v2), v, v));
  const __m512 e = internal::Exp16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u));
  const __m512 s = internal::Reciprocal16(_mm512_add_ps(one, e));
  const __m512 du = _mm512_mul_ps(_mm512_set1_ps(2.0f * kSqrt2OverPi),
                                  _mm512_fmadd_ps(_mm512_set1_ps(3.0f * kGeluCubic), v2, one));
  return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(v, s), _mm512_mul_ps(e, s)), du, s);
}
#endif

// sigmoid(x) without overflow: exp of a non-positive argument only.
inline float SigmoidScalar(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

constexpr float kSoftplusThreshold = 20.0f;  // PyTorch's: above it softplus(x) is x in f32
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

// Runs vec8(i) on blocks of 8 elements and scalar(i) on the tail, in parallel.
template <typename Vec8, typename Scalar>
void ForBlocks(int64_t n, Vec8 vec8, Scalar scalar) {
  const int64_t blocks = n / 8;
#pragma omp parallel for schedule(static) if (n > internal::kParallelThreshold)
  for (int64_t b = 0; b < blocks; ++b) vec8(b * 8);
  for (int64_t i = blocks * 8; i < n; ++i) scalar(i);
}

}  // namespace

absl::Status GeluForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("GeluForward", {{"x", &x}, {"out", &out}}));
#if defined(__AVX512F__)
  if (AllContiguousF32({&x, &out})) {
    const float* xp = x.data<float>();
    float* op = out.data<float>();
    ForBlocks16(x.numel(), [&](int64_t i, __mmask16 live) {
      _mm512_mask_storeu_ps(op + i, live, Gelu16(_mm512_maskz_loadu_ps(live, xp + i)));
    });
    return absl::OkStatus();
  }
#elif defined(__AVX2__)
  if (AllContiguousF32({&x, &out})) {
    const float* xp = x.data<float>();
    float* op = out.data<float>();
    ForBlocks(
        x.numel(),
        [&](int64_t i) {
          const __m256 v = _mm256_loadu_ps(xp + i);
          const __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
          const __m256 u = _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi),
                                         _mm256_fmadd_ps(_mm256_set1_ps(kGeluCubic), v3, v));
          const __m256 e = internal::Exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
          _mm256_storeu_ps(op + i, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
        },
        [&](int64_t i) { op[i] = GeluScalar(xp[i]); });
    return absl::OkStatus();
  }
#endif
  MapElements<1>({&x}, out, [](float x) { return GeluScalar(x); });
  return absl::OkStatus();
}

absl::Status GeluBackward(const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("GeluBackward", {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
#if defined(__AVX512F__)
  if (AllContiguousF32({&x, &dout, &dx})) {
    const float* xp = x.data<float>();
    const float* dp = dout.data<float>();
    float* gp = dx.data<float>();
    ForBlocks16(x.numel(), [&](int64_t i, __mmask16 live) {
      const __m512 g = GeluGrad16(_mm512_maskz_loadu_ps(live, xp + i));
      _mm512_mask_storeu_ps(gp + i, live, _mm512_mul_ps(g, _mm512_maskz_loadu_ps(live, dp + i)));
    });
    return absl::OkStatus();
  }
#elif defined(__AVX2__)
  if (AllContiguousF32({&x, &dout, &dx})) {
    const float* xp = x.data<float>();
    const float* dp = dout.data<float>();
    float* gp = dx.data<float>();
    ForBlocks(
        x.numel(),
        [&](int64_t i) {
          const __m256 v = _mm256_loadu_ps(xp + i);
          const __m256 v2 = _mm256_mul_ps(v, v);
          const __m256 u = _mm256_mul_ps(
              _mm256_set1_ps(kSqrt2OverPi), _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(kGeluCubic), v2), v, v));
          const __m256 one = _mm256_set1_ps(1.0f);
          const __m256 e = internal::Exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
          const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
          const __m256 du = _mm256_mul_ps(
              _mm256_set1_ps(2.0f * kSqrt2OverPi),
              _mm256_fmadd_ps(_mm256_set1_ps(3.0f * kGeluCubic), v2, one));
          // s + x s (e s) du, see Note [GELU as a sigmoid]
          const __m256 grad = _mm256_fmadd_ps(
              _mm256_mul_ps(_mm256_mul_ps(v, s), _mm256_mul_ps(e, s)), du, s);
          _mm256_storeu_ps(gp + i, _mm256_mul_ps(grad, _mm256_loadu_ps(dp + i)));
        },
        [&](int64_t i) { gp[i] = GeluGradScalar(xp[i]) * dp[i]; });
    return absl::OkStatus();
  }
#endif
  MapElements<2>({&x, &dout}, dx, [](float x, float d) { return GeluGradScalar(x) * d; });
  return absl::OkStatus();
}

absl::Status ReluForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("ReluForward", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return x > 0.0f ? x : 0.0f; });
  return absl::OkStatus();
}

absl::Status ReluBackward(const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("ReluBackward", {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
  MapElements<2>({&x, &dout}, dx, [](float x, float d) { return x > 0.0f ? d : 0.0f; });
  return absl::OkStatus();
}

absl::Status Relu6Forward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Relu6Forward", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f; });
  return absl::OkStatus();
}

absl::Status Relu6Backward(const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("Relu6Backward", {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
  MapElements<2>({&x, &dout}, dx,
                 [](float x, float d) { return x > 0.0f && x < 6.0f ? d : 0.0f; });
  return absl::OkStatus();
}

namespace {

absl::Status CheckMaskArgs(absl::string_view op, const Tensor& mask, const Tensor& f32,
                           absl::string_view f32_name) {
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, f32_name, f32));
  STRATA_RETURN_IF_ERROR(CheckDefined(op, "mask", mask));
  STRATA_RETURN_IF_ERROR(CheckDType(op, "mask", mask, DType::kU8));
  STRATA_RETURN_IF_ERROR(CheckContiguous(op, "mask", mask));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, "mask", mask));
  return CheckShape(op, "mask", mask, f32.shape());
}

}  // namespace

absl::Status ReluMask(const Tensor& x, float upper, const Tensor& mask) {
  STRATA_RETURN_IF_ERROR(CheckMaskArgs("ReluMask", mask, x, "x"));
  const float* xp = x.data<float>();
  uint8_t* mp = mask.data<uint8_t>();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n > internal::kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) mp[i] = xp[i] > 0.0f && xp[i] < upper;
  return absl::OkStatus();
}

absl::Status MaskedBackward(const Tensor& mask, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(CheckMaskArgs("MaskedBackward", mask, dout, "dout"));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous("MaskedBackward", "dx", dx, dout.shape()));
  const uint8_t* mp = mask.data<uint8_t>();
  const float* dp = dout.data<float>();
  float* gp = dx.data<float>();
  const int64_t n = dout.numel();
#pragma omp parallel for simd schedule(static) if (n > internal::kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) gp[i] = mp[i] ? dp[i] : 0.0f;
  return absl::OkStatus();
}

// The activations below are scalar loops (MapElements: any strides, f32 or bf16): they serve
// custom models, not the GPT's or the CNN's hot paths, and the compiler vectorizes what it can.
absl::Status SigmoidForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("SigmoidForward", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return SigmoidScalar(x); });
  return absl::OkStatus();
}

absl::Status SigmoidBackward(const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("SigmoidBackward", {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
  MapElements<2>({&x, &dout}, dx, [](float x, float d) {
    const float s = SigmoidScalar(x);
    return d * s * (1.0f - s);
  });
  return absl::OkStatus();
}

absl::Status TanhForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("TanhForward", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return std::tanh(x); });
  return absl::OkStatus();
}

absl::Status TanhBackward(const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("TanhBackward", {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
  MapElements<2>({&x, &dout}, dx, [](float x, float d) {
    const float t = std::tanh(x);
    return d * (1.0f - t * t);
  });
  return absl::OkStatus();
}

absl::Status SiluForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("SiluForward", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return x * SigmoidScalar(x); });
  return absl::OkStatus();
}

// d/dx x s(x) = s (1 + x (1 - s)).
absl::Status SiluBackward(const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("SiluBackward", {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
  MapElements<2>({&x, &dout}, dx, [](float x, float d) {
    const float s = SigmoidScalar(x);
    return d * s * (1.0f + x * (1.0f - s));
  });
  return absl::OkStatus();
}

#if defined(__AVX512F__)
// 1 / (1 + exp(-x)); Exp16 clamps its argument, so no lane overflows to inf.
inline __m512 Sigmoid16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, internal::Exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}
#endif

absl::Status SwiGluForward(const Tensor& gate, const Tensor& up, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("SwiGluForward", {{"gate", &gate}, {"up", &up}, {"out", &out}}));
#if defined(__AVX512F__)
  if (AllContiguousF32({&gate, &up, &out})) {
    const float *gp = gate.data<float>(), *up_p = up.data<float>();
    float* op = out.data<float>();
    ForBlocks16(gate.numel(), [&](int64_t i, __mmask16 live) {
      const __m512 g = _mm512_maskz_loadu_ps(live, gp + i);
      const __m512 silu = _mm512_mul_ps(g, Sigmoid16(g));
      _mm512_mask_storeu_ps(op + i, live, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(live, up_p + i)));
    });
    return absl::OkStatus();
  }
#endif
  MapElements<2>({&gate, &up}, out, [](float g, float u) { return g * SigmoidScalar(g) * u; });
  return absl::OkStatus();
}

// silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
absl::Status SwiGluBackward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                            const Tensor& dgate, const Tensor& dup) {
  STRATA_RETURN_IF_ERROR(
      internal::CheckSwiGluBackward(internal::CheckOnHost, gate, up, dout, dgate, dup));
#if defined(__AVX512F__)
  if (AllContiguousF32({&gate, &up, &dout}) && (!dgate.defined() || AllContiguousF32({&dgate})) &&
      (!dup.defined() || AllContiguousF32({&dup}))) {
    const float *gp = gate.data<float>(), *up_p = up.data<float>(), *dp = dout.data<float>();
    float* dg = dgate.defined() ? dgate.data<float>() : nullptr;
    float* du = dup.defined() ? dup.data<float>() : nullptr;
    const __m512 one = _mm512_set1_ps(1.0f);
    ForBlocks16(gate.numel(), [&](int64_t i, __mmask16 live) {
      const __m512 g = _mm512_maskz_loadu_ps(live, gp + i);
      const __m512 d = _mm512_maskz_loadu_ps(live, dp + i);
      const __m512 s = Sigmoid16(g);
      if (dg != nullptr) {
        const __m512 dsilu = _mm512_mul_ps(s, _mm512_fmadd_ps(g, _mm512_sub_ps(one, s), one));
        const __m512 u = _mm512_maskz_loadu_ps(live, up_p + i);
        _mm512_mask_storeu_ps(dg + i, live, _mm512_mul_ps(_mm512_mul_ps(d, u), dsilu));
      }
      if (du != nullptr) _mm512_mask_storeu_ps(du + i, live, _mm512_mul_ps(d, _mm512_mul_ps(g, s)));
    });
    return absl::OkStatus();
  }
#endif
  // dgate first: dup may be dout, which dgate reads.
  if (dgate.defined()) {
    MapElements<3>({&gate, &up, &dout}, dgate, [](float g, float u, float d) {
      const float s = SigmoidScalar(g);
      return d * u * s * (1.0f + g * (1.0f - s));
    });
  }
  if (dup.defined()) {
    MapElements<2>({&gate, &dout}, dup, [](float g, float d) { return d * g * SigmoidScalar(g); });
  }
  return absl::OkStatus();
}

// log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow, full precision in both tails.
absl::Status SoftplusForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("SoftplusForward", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) {
    return x > kSoftplusThreshold ? x : std::max(x, 0.0f) + std::log1p(std::exp(-std::abs(x)));
  });
  return absl::OkStatus();
}

absl::Status SoftplusBackward(const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("SoftplusBackward", {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
  MapElements<2>({&x, &dout}, dx, [](float x, float d) {
    return x > kSoftplusThreshold ? d : d * SigmoidScalar(x);
  });
  return absl::OkStatus();
}

absl::Status GeluExactForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("GeluExactForward", {{"x", &x}, {"out", &out}}));
  // 0.5 x erfc(-x / sqrt(2)) is 0.5 x (1 + erf(x / sqrt(2))) without its cancellation for x < 0.
  MapElements<1>({&x}, out, [](float x) { return 0.5f * x * std::erfc(-x * kInvSqrt2); });
  return absl::OkStatus();
}

// d/dx x Phi(x) = Phi(x) + x phi(x).
absl::Status GeluExactBackward(const Tensor& x, const Tensor& dout, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("GeluExactBackward", {{"x", &x}, {"dout", &dout}, {"dx", &dx}}));
  MapElements<2>({&x, &dout}, dx, [](float x, float d) {
    const float cdf = 0.5f * std::erfc(-x * kInvSqrt2);
    return d * (cdf + x * kInvSqrt2Pi * std::exp(-0.5f * x * x));
  });
  return absl::OkStatus();
}

}  // namespace strata::cpu
