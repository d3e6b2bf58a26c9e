#include "runtime/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/embedding.h"
#include "runtime/cpu/internal/cross_entropy_checks.h"
#include "runtime/cpu/internal/vec_math.h"

namespace strata::cpu {
namespace {

inline int64_t TargetAt(const Tensor& t, int64_t i) {
  return t.dtype() == DType::kI64 ? static_cast<const int64_t*>(t.raw_data())[i]
                                  : static_cast<const int32_t*>(t.raw_data())[i];
}

}  // namespace

absl::Status SoftmaxCrossEntropy(const Tensor& logits, const Tensor& targets, const Tensor& loss,
                                 const Tensor& dlogits, float dloss, int64_t ignore_index,
                                 float label_smoothing) {
  constexpr char kOp[] = "SoftmaxCrossEntropy";
  STRATA_RETURN_IF_ERROR(
      internal::CheckCrossEntropyLogits(CheckF32Contiguous, logits, label_smoothing));
  const int64_t v = logits.dim(-1), rows = logits.numel() / v;
  STRATA_RETURN_IF_ERROR(CheckIds(kOp, "targets", targets, v, ignore_index));
  STRATA_RETURN_IF_ERROR(
      internal::CheckCrossEntropyOutputs(CheckF32Contiguous, logits, targets, loss, dlogits));
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) count += TargetAt(targets, r) != ignore_index;
  const float* lp = logits.data<float>();
  float* dp = dlogits.defined() ? dlogits.data<float>() : nullptr;
  const float grad_scale = count > 0 ? dloss / static_cast<float>(count) : 0.0f;
  // The target distribution: `on` at the target, `off` everywhere (the target included).
  const float off = label_smoothing / static_cast<float>(v), on = 1.0f - label_smoothing;
  double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (logits.numel() > (1 << 14))
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = lp + r * v;
    float* d = dp ? dp + r * v : nullptr;
    const int64_t t = TargetAt(targets, r);
    if (t == ignore_index) {
      if (d != nullptr) std::fill(d, d + v, 0.0f);
      continue;
    }
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < v; ++i) m = std::max(m, x[i]);
    const float target_logit = x[t];  // read before d (which may be x) is written
    // sum_j x_j, for the smoothing term sum_j -log p_j = V (m + log sum) - sum_j x_j.
    double row_sum = 0.0;
    if (off != 0.0f) {
#pragma omp simd reduction(+ : row_sum)
      for (int64_t i = 0; i < v; ++i) row_sum += x[i];
    }
    const float sum = internal::ExpShiftedSum(x, d, v, m);
    const double lse = static_cast<double>(std::log(sum)) + m;
    total += on * (lse - target_logit);
    if (off != 0.0f) total += off * (static_cast<double>(v) * lse - row_sum);
    if (d != nullptr) {
      // d = (softmax - on one_hot(t) - off) * grad_scale
      const float scale = grad_scale / sum, shift = off * grad_scale;
#pragma omp simd
      for (int64_t i = 0; i < v; ++i) d[i] = d[i] * scale - shift;
      d[t] -= on * grad_scale;
    }
  }
  loss.data<float>()[0] =
      count > 0 ? static_cast<float>(total / static_cast<double>(count))
                : std::numeric_limits<float>::quiet_NaN();  // as PyTorch: mean over nothing
  return absl::OkStatus();
}

}  // namespace strata::cpu
