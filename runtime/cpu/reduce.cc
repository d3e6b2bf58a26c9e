#include "runtime/cpu/reduce.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/elementwise_loop.h"

namespace strata::cpu {
namespace {

// `full` viewed as (outer, n, inner) around dimension `dim`; `reduced` must be full's shape
// without that dimension.
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
};

absl::StatusOr<Around> CheckAround(absl::string_view op, absl::string_view full_name,
                                   const Tensor& full, int dim, absl::string_view reduced_name,
                                   const Tensor& reduced) {
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, full_name, full));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, reduced_name, reduced));
  const int rank = full.rank();
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": dim ", dim, " is out of range for ",
                                                   full_name, " ", full.ToString()));
  }
  std::vector<int64_t> expected;
  Around a;
  for (int i = 0; i < rank; ++i) {
    if (i == d) {
      a.n = full.dim(i);
      continue;
    }
    expected.push_back(full.dim(i));
    (i < d ? a.outer : a.inner) *= full.dim(i);
  }
  if (reduced.shape() != Shape(expected)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", reduced_name, " is ",
                                                   reduced.ToString(), ", expected ",
                                                   Shape(expected).ToString(), " (", full_name, " ",
                                                   full.ToString(), " without dim ", dim, ")"));
  }
  return a;
}

}  // namespace

absl::Status SumDim(const Tensor& x, int dim, const Tensor& out) {
  STRATA_ASSIGN_OR_RETURN(const Around a, CheckAround("SumDim", "x", x, dim, "out", out));
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
  STRATA_ASSIGN_OR_RETURN(const Around a, CheckAround("MaxDim", "x", x, dim, "out", out));
  if (a.n == 0 && out.numel() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaxDim: x ", x.ToString(), " has no elements along dim ", dim));
  }
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
  STRATA_ASSIGN_OR_RETURN(const Around a,
                          CheckAround("MaxDimBackward", "x", x, dim, "out", out));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous("MaxDimBackward", "dout", dout, out.shape()));
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous("MaxDimBackward", "dx", dx, x.shape()));
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
  STRATA_ASSIGN_OR_RETURN(const Around a, CheckAround("BroadcastDim", "out", out, dim, "x", x));
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
