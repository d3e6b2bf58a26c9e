#include "runtime/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/elementwise_loop.h"
#include "runtime/cpu/internal/vec_math.h"

namespace strata::cpu {
namespace {

absl::Status CheckRows(absl::string_view op, std::initializer_list<std::pair<absl::string_view, const Tensor*>> args) {
  STRATA_RETURN_IF_ERROR(internal::CheckSameShapeAndDType(op, args));
  for (const auto& [name, t] : args) {
    STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, name, *t));
    if (t->rank() < 1) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is a scalar"));
    }
  }
  return absl::OkStatus();
}

// One row of the forward: out = exp(in - max) / sum.
void SoftmaxRow(const float* in, float* out, int64_t c) {
#ifdef __AVX512F__
  using internal::TailMask;
  __m512 mv = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < c; i += 16) {
    mv = _mm512_mask_max_ps(mv, TailMask(c - i), mv, _mm512_maskz_loadu_ps(TailMask(c - i), in + i));
  }
  float m = internal::HorizontalMax(mv);
#else
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < c; ++i) m = std::max(m, in[i]);
#endif
  if (m == -std::numeric_limits<float>::infinity()) m = 0.0f;  // an all -inf row gives NaN, as PyTorch
  const float inv = 1.0f / internal::ExpShiftedSum(in, out, c, m);
#ifdef __AVX512F__
  const __m512 s = _mm512_set1_ps(inv);
  for (int64_t i = 0; i < c; i += 16) {
    const __mmask16 live = TailMask(c - i);
    _mm512_mask_storeu_ps(out + i, live, _mm512_mul_ps(_mm512_maskz_loadu_ps(live, out + i), s));
  }
#else
#pragma omp simd
  for (int64_t i = 0; i < c; ++i) out[i] *= inv;
#endif
}

// One row of the backward: dx = y (dy - y . dy).
void SoftmaxGradRow(const float* y, const float* dy, float* dx, int64_t c) {
#ifdef __AVX512F__
  using internal::TailMask;
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < c; i += 16) {
    const __mmask16 live = TailMask(c - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(live, y + i), _mm512_maskz_loadu_ps(live, dy + i), acc);
  }
  const __m512 dot = _mm512_set1_ps(internal::HorizontalSum(acc));
  for (int64_t i = 0; i < c; i += 16) {
    const __mmask16 live = TailMask(c - i);
    const __m512 yv = _mm512_maskz_loadu_ps(live, y + i);
    _mm512_mask_storeu_ps(dx + i, live,
                          _mm512_mul_ps(yv, _mm512_sub_ps(_mm512_maskz_loadu_ps(live, dy + i), dot)));
  }
#else
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (int64_t i = 0; i < c; ++i) dot += y[i] * dy[i];
#pragma omp simd
  for (int64_t i = 0; i < c; ++i) dx[i] = y[i] * (dy[i] - dot);
#endif
}

}  // namespace

absl::Status SoftmaxForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckRows("SoftmaxForward", {{"x", &x}, {"out", &out}}));
  const int64_t c = x.dim(-1), rows = c ? x.numel() / c : 0;
  const float* xp = x.data<float>();
  float* op = out.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > internal::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) SoftmaxRow(xp + r * c, op + r * c, c);
  return absl::OkStatus();
}

absl::Status SoftmaxBackward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(CheckRows("SoftmaxBackward", {{"y", &y}, {"dy", &dy}, {"dx", &dx}}));
  const int64_t c = y.dim(-1), rows = c ? y.numel() / c : 0;
  const float* yp = y.data<float>();
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
#pragma omp parallel for schedule(static) if (y.numel() > internal::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) SoftmaxGradRow(yp + r * c, dyp + r * c, dxp + r * c, c);
  return absl::OkStatus();
}

absl::Status LogSoftmaxForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckRows("LogSoftmaxForward", {{"x", &x}, {"out", &out}}));
  const int64_t c = x.dim(-1), rows = c ? x.numel() / c : 0;
  const float* xp = x.data<float>();
  float* op = out.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > internal::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = xp + r * c;
    float* o = op + r * c;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < c; ++i) m = std::max(m, in[i]);
    if (m == -std::numeric_limits<float>::infinity()) m = 0.0f;  // all -inf: NaN, as PyTorch
    double sum = 0;  // in double: the log of a sum of many small terms keeps its digits
    for (int64_t i = 0; i < c; ++i) sum += std::exp(static_cast<double>(in[i] - m));
    const float shift = m + static_cast<float>(std::log(sum));
    for (int64_t i = 0; i < c; ++i) o[i] = in[i] - shift;
  }
  return absl::OkStatus();
}

absl::Status LogSoftmaxBackward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(CheckRows("LogSoftmaxBackward", {{"y", &y}, {"dy", &dy}, {"dx", &dx}}));
  const int64_t c = y.dim(-1), rows = c ? y.numel() / c : 0;
  const float* yp = y.data<float>();
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
#pragma omp parallel for schedule(static) if (y.numel() > internal::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = yp + r * c;
    const float* dyr = dyp + r * c;
    float* dxr = dxp + r * c;
    double sum = 0;
    for (int64_t i = 0; i < c; ++i) sum += dyr[i];
    const float s = static_cast<float>(sum);
    for (int64_t i = 0; i < c; ++i) dxr[i] = dyr[i] - std::exp(yr[i]) * s;
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
