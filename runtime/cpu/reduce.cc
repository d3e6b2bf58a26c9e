#include "runtime/cpu/reduce.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/elementwise_loop.h"
#include "runtime/cpu/internal/reduce_checks.h"

namespace strata::cpu {
namespace {

using internal::ReduceAround;

absl::StatusOr<ReduceAround> CheckAround(absl::string_view op, absl::string_view full_name,
                                         const Tensor& full, int dim,
                                         absl::string_view reduced_name, const Tensor& reduced) {
  return internal::CheckReduceAround(CheckF32Contiguous, op, full_name, full, dim, reduced_name,
                                     reduced);
}

}  // namespace

absl::Status SumDim(const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a, CheckAround("SumDim", "x", x, dim, "out", out));
  const float* xp = x.data<float>();
  float* op = out.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > internal::kParallelThreshold)
  for (int64_t o = 0; o < a.outer; ++o) {
    for (int64_t i = 0; i < a.inner; ++i) {
      double s = 0;
      for (int64_t k = 0; k < a.n; ++k) s += xp[(o * a.n + k) * a.inner + i];
      op[o * a.inner + i] = static_cast<float>(s);
    }
  }
  return absl::OkStatus();
}

absl::Status MaxDim(const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a,
                          internal::CheckMaxDim(CheckF32Contiguous, x, dim, out));
  const float* xp = x.data<float>();
  float* op = out.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > internal::kParallelThreshold)
  for (int64_t o = 0; o < a.outer; ++o) {
    for (int64_t i = 0; i < a.inner; ++i) {
      float m = xp[o * a.n * a.inner + i];
      for (int64_t k = 1; k < a.n && !std::isnan(m); ++k) {
        const float v = xp[(o * a.n + k) * a.inner + i];
        if (v > m || std::isnan(v)) m = v;
      }
      op[o * a.inner + i] = m;
    }
  }
  return absl::OkStatus();
}

absl::Status MaxDimBackward(const Tensor& x, const Tensor& out, const Tensor& dout, int dim,
                            const Tensor& dx) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a,
                          internal::CheckMaxDimBackward(CheckF32Contiguous, x, out, dout, dim, dx));
  const float* xp = x.data<float>();
  const float* mp = out.data<float>();
  const float* dp = dout.data<float>();
  float* gp = dx.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > internal::kParallelThreshold)
  for (int64_t o = 0; o < a.outer; ++o) {
    for (int64_t i = 0; i < a.inner; ++i) {
      const float m = mp[o * a.inner + i];
      bool given = false;
      for (int64_t k = 0; k < a.n; ++k) {
        const int64_t at = (o * a.n + k) * a.inner + i;
        const bool first = !given && (xp[at] == m || (std::isnan(m) && std::isnan(xp[at])));
        gp[at] = first ? dp[o * a.inner + i] : 0.0f;
        given = given || first;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status BroadcastDim(const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const ReduceAround a,
                          CheckAround("BroadcastDim", "out", out, dim, "x", x));
  const float* xp = x.data<float>();
  float* op = out.data<float>();
#pragma omp parallel for schedule(static) if (out.numel() > internal::kParallelThreshold)
  for (int64_t o = 0; o < a.outer; ++o) {
    for (int64_t k = 0; k < a.n; ++k) {
      for (int64_t i = 0; i < a.inner; ++i) op[(o * a.n + k) * a.inner + i] = xp[o * a.inner + i];
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
