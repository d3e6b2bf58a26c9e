#include "runtime/cpu/rotary.h"

#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/rotary_checks.h"

namespace strata::cpu {
namespace {

constexpr int64_t kParallelThreshold = 1 << 14;

// Llama 3's scaled inverse frequency (transformers' _compute_llama3_parameters).
double Scaled(double inv_freq, const RotaryScaling& s) {
  if (s.factor == 0) return inv_freq;
  const double wavelen = 2 * std::numbers::pi / inv_freq;
  const double low_wavelen = s.original_max_positions / s.low_freq_factor;
  const double high_wavelen = s.original_max_positions / s.high_freq_factor;
  if (wavelen < high_wavelen) return inv_freq;
  if (wavelen > low_wavelen) return inv_freq / s.factor;
  const double smooth = (s.original_max_positions / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
  return (1 - smooth) * inv_freq / s.factor + smooth * inv_freq;
}

absl::Status Rotate(const char* op, const Tensor& x, const Tensor& table, const Tensor& y,
                    float sign) {
  STRATA_RETURN_IF_ERROR(internal::CheckRotary(CheckF32Contiguous, op, x, table, y));
  const int64_t B = x.dim(0), T = x.dim(1), H = x.dim(2), D = x.dim(3), half = D / 2;
  const float* xp = x.data<float>();
  const float* tp = table.data<float>();
  float* yp = y.data<float>();
#pragma omp parallel for collapse(2) schedule(static) if (x.numel() > kParallelThreshold)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const float* cos = tp + t * D;
      const float* sin = cos + half;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t o = ((b * T + t) * H + h) * D;
        const float* x1 = xp + o;
        const float* x2 = x1 + half;
        float* y1 = yp + o;
        float* y2 = y1 + half;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const float a = x1[i], c = x2[i], s = sign * sin[i];  // read both before y (may be x)
          y1[i] = a * cos[i] - c * s;
          y2[i] = c * cos[i] + a * s;
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RotaryTable(double theta, const RotaryScaling& scaling, const Tensor& table) {
  constexpr char kOp[] = "RotaryTable";
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(kOp, "table", table));
  if (table.rank() != 2 || table.dim(1) % 2 != 0 || table.dim(1) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": table is ", table.ToString(), ", expected (T, D) with D even"));
  }
  if (!(theta > 1) || !std::isfinite(theta)) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": theta = ", theta, " must be > 1"));
  }
  if (scaling.factor != 0 &&
      !(scaling.factor >= 1 && scaling.low_freq_factor > 0 &&
        scaling.high_freq_factor > scaling.low_freq_factor && scaling.original_max_positions > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": rope scaling factor = ", scaling.factor, ", low_freq_factor = ",
        scaling.low_freq_factor, ", high_freq_factor = ", scaling.high_freq_factor,
        ", original_max_position_embeddings = ", scaling.original_max_positions,
        " must have factor >= 1 and 0 < low_freq_factor < high_freq_factor"));
  }
  const int64_t T = table.dim(0), D = table.dim(1), half = D / 2;
  float* p = table.data<float>();
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq =
        Scaled(std::pow(theta, -static_cast<double>(2 * i) / static_cast<double>(D)), scaling);
    for (int64_t t = 0; t < T; ++t) {
      const double angle = static_cast<double>(t) * inv_freq;
      p[t * D + i] = static_cast<float>(std::cos(angle));
      p[t * D + half + i] = static_cast<float>(std::sin(angle));
    }
  }
  return absl::OkStatus();
}

absl::Status RotaryForward(const Tensor& x, const Tensor& table, const Tensor& y) {
  return Rotate("RotaryForward", x, table, y, 1.0f);
}

absl::Status RotaryBackward(const Tensor& table, const Tensor& dy, const Tensor& dx) {
  return Rotate("RotaryBackward", dy, table, dx, -1.0f);
}

}  // namespace strata::cpu
