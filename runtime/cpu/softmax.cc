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
    const float inv = 1.0f / internal::ExpShiftedSum(in, o, c, m);
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
