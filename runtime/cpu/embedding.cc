#include "runtime/cpu/embedding.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/embedding_checks.h"

namespace strata::cpu {
namespace {

inline int64_t IdAt(const Tensor& ids, int64_t i) {
  return ids.dtype() == DType::kI64 ? static_cast<const int64_t*>(ids.raw_data())[i]
                                    : static_cast<const int32_t*>(ids.raw_data())[i];
}

}  // namespace

absl::Status CheckIds(absl::string_view op, absl::string_view name, const Tensor& ids,
                      int64_t vocab, int64_t ignore_index) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, name, ids));
  if (ids.dtype() != DType::kI32 && ids.dtype() != DType::kI64) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " is ", ids.ToString(), ", expected i32 or i64"));
  }
  STRATA_RETURN_IF_ERROR(CheckContiguous(op, name, ids));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, name, ids));
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const int64_t id = IdAt(ids, i);
    if ((id < 0 || id >= vocab) && id != ignore_index) {
      return absl::OutOfRangeError(absl::StrCat(op, ": ", name, "[", i, "] = ", id,
                                                " is outside [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status EmbeddingForward(const Tensor& ids, const Tensor& table, const Tensor& out) {
  constexpr char kOp[] = "EmbeddingForward";
  STRATA_RETURN_IF_ERROR(internal::CheckEmbeddingTable(CheckF32Contiguous, kOp, "table", table));
  const int64_t v = table.dim(0), c = table.dim(1);
  STRATA_RETURN_IF_ERROR(CheckIds(kOp, "ids", ids, v));
  STRATA_RETURN_IF_ERROR(internal::CheckEmbeddingRows(CheckF32Contiguous, kOp, "out", ids, out, c));
  const float* tp = table.data<float>();
  float* op = out.data<float>();
  const int64_t n = ids.numel();
#pragma omp parallel for schedule(static) if (n * c > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(op + i * c, tp + IdAt(ids, i) * c, c * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status EmbeddingBackward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                               GradMode mode) {
  constexpr char kOp[] = "EmbeddingBackward";
  STRATA_RETURN_IF_ERROR(internal::CheckEmbeddingTable(CheckF32Contiguous, kOp, "dtable", dtable));
  const int64_t v = dtable.dim(0), c = dtable.dim(1);
  STRATA_RETURN_IF_ERROR(CheckIds(kOp, "ids", ids, v));
  STRATA_RETURN_IF_ERROR(
      internal::CheckEmbeddingRows(CheckF32Contiguous, kOp, "dout", ids, dout, c));
  const float* dp = dout.data<float>();
  float* tp = dtable.data<float>();
  if (mode == GradMode::kOverwrite) std::fill(tp, tp + v * c, 0.0f);
  const int64_t n = ids.numel();
  constexpr int64_t kBlock = 32;
#pragma omp parallel for schedule(static) if (n * c > (1 << 15))
  for (int64_t c0 = 0; c0 < c; c0 += kBlock) {
    const int64_t c1 = std::min(c, c0 + kBlock);
    for (int64_t i = 0; i < n; ++i) {
      float* row = tp + IdAt(ids, i) * c;
      const float* d = dp + i * c;
#pragma omp simd
      for (int64_t k = c0; k < c1; ++k) row[k] += d[k];
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu
