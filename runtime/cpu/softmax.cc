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

// out[i] = exp(x[i] - shift) for i < n; returns the sum.
float ExpShifted(const float* x, float* out, int64_t n, float shift) {
  int64_t i = 0;
  float sum = 0.0f;
#ifdef __AVX2__
  __m256 acc = _mm256_setzero_ps();
  const __m256 s = _mm256_set1_ps(shift);
  for (; i + 8 <= n; i += 8) {
    const __m256 e = internal::Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(out + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float l : lanes) sum += l;
#endif
  for (; i < n; ++i) {
    out[i] = std::exp(x[i] - shift);
    sum += out[i];
  }
  return sum;
}

}  // namespace

absl::Status SoftmaxForward(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckRows("SoftmaxForward", {{"x", &x}, {"out", &out}}));
  const int64_t c = x.dim(-1), rows = c ? x.numel() / c : 0;
  const float* xp = x.data<float>();
  float* op = out.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > internal::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = xp + r * c;
    float* o = op + r * c;
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < c; ++i) m = std::max(m, in[i]);
    if (m == -std::numeric_limits<float>::infinity()) m = 0.0f;  // an all -inf row gives NaN, as PyTorch
    const float inv = 1.0f / ExpShifted(in, o, c, m);
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) o[i] *= inv;
  }
  return absl::OkStatus();
}

absl::Status SoftmaxBackward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  STRATA_RETURN_IF_ERROR(CheckRows("SoftmaxBackward", {{"y", &y}, {"dy", &dy}, {"dx", &dx}}));
  const int64_t c = y.dim(-1), rows = c ? y.numel() / c : 0;
  const float* yp = y.data<float>();
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
#pragma omp parallel for schedule(static) if (y.numel() > internal::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = yp + r * c;
    const float* dr = dyp + r * c;
    float* out = dxp + r * c;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t i = 0; i < c; ++i) dot += yr[i] * dr[i];
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) out[i] = yr[i] * (dr[i] - dot);
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
