// The argument checks of the copies (copy.cc), shared by the CPU kernels and their CUDA launchers
// (Note [one argument check per kernel] in kernel_checks.h). `placed` checks that a tensor lives
// on the caller's device (CheckHostAddressable or CheckOnCuda). TransposeCopy, ReshapeCopy,
// Concat and Split are views plus CopyStrided, so they are written here once over the device's
// CopyStrided, `copy(src, dst)`.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/cpu/internal/kernel_checks.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

// CopyStrided: dst of src's dtype and shape, both on the device.
inline absl::Status CheckCopyStrided(TensorCheck placed, const Tensor& src, const Tensor& dst) {
  constexpr char kOp[] = "CopyStrided";
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "src", src));
  STRATA_RETURN_IF_ERROR(CheckDType(kOp, "dst", dst, src.dtype()));
  STRATA_RETURN_IF_ERROR(CheckShape(kOp, "dst", dst, src.shape()));
  STRATA_RETURN_IF_ERROR(placed(kOp, "src", src));
  return placed(kOp, "dst", dst);
}

// CopyStrided's refusal of an element size it has no copy for.
inline absl::Status UnsupportedElementSize(const Tensor& src) {
  return absl::UnimplementedError(absl::StrCat("CopyStrided: src ", src.ToString(), " has ",
                                               SizeOf(src.dtype()), "-byte elements"));
}

// TransposeCopy: copy(src with dim0 and dim1 swapped, dst).
template <typename Copy>
absl::Status TransposeCopyWith(const Tensor& src, int dim0, int dim1, const Tensor& dst,
                               Copy copy) {
  STRATA_RETURN_IF_ERROR(CheckDefined("TransposeCopy", "src", src));
  absl::StatusOr<Tensor> view = src.Transpose(dim0, dim1);
  if (!view.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("TransposeCopy: cannot swap dimensions ", dim0,
                                                   " and ", dim1, " of src ", src.ToString()));
  }
  return copy(*view, dst);
}

// ReshapeCopy: copy(src, dst) with one side viewed in the other's shape.
template <typename Copy>
absl::Status ReshapeCopyWith(const Tensor& src, const Tensor& dst, Copy copy) {
  constexpr char kOp[] = "ReshapeCopy";
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "src", src));
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "dst", dst));
  if (src.numel() != dst.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": src ", src.ToString(), " and dst ",
                                                   dst.ToString(), " differ in element count"));
  }
  // View whichever side can be viewed in the other's shape; the copy does the rest.
  absl::StatusOr<Tensor> dst_as_src = dst.Reshape(src.shape().dims());
  if (dst_as_src.ok()) return copy(src, *dst_as_src);
  absl::StatusOr<Tensor> src_as_dst = src.Reshape(dst.shape().dims());
  if (src_as_dst.ok()) return copy(*src_as_dst, dst);
  return absl::InvalidArgumentError(
      absl::StrCat(kOp, ": neither src ", src.ToString(), " nor dst ", dst.ToString(),
                   " can be viewed in the other's shape; make one of them contiguous"));
}

// Checks that `parts` tile `whole` along `dim` (before anything is copied) and then calls
// fn(part, slice of whole) for each (Concat and Split).
template <typename Fn>
absl::Status ForEachPart(TensorCheck placed, absl::string_view op, absl::string_view whole_name,
                         absl::Span<const Tensor> parts, int dim, const Tensor& whole, Fn fn) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, whole_name, whole));
  const int rank = whole.rank();
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": dimension ", dim, " out of range for ",
                                                   whole_name, " ", whole.ToString()));
  }
  int64_t total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    if (!p.defined()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": part ", i, " is undefined"));
    }
    if (p.dtype() != whole.dtype()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": part ", i, " is ", p.ToString(),
                                                     ", expected dtype ", DTypeName(whole.dtype()),
                                                     " like ", whole_name, " ", whole.ToString()));
    }
    bool same = p.rank() == rank;
    for (int k = 0; same && k < rank; ++k) same = k == d || p.dim(k) == whole.dim(k);
    if (!same) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": part ", i, " is ", p.ToString(),
                                                     ", which differs from ", whole_name, " ",
                                                     whole.ToString(), " outside dimension ", d));
    }
    STRATA_RETURN_IF_ERROR(placed(op, "part", p));
    total += p.dim(d);
  }
  if (total != whole.dim(d)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": the parts add up to ", total,
                                                   " along dimension ", d, ", but ", whole_name,
                                                   " ", whole.ToString(), " has ", whole.dim(d)));
  }
  STRATA_RETURN_IF_ERROR(placed(op, whole_name, whole));
  int64_t offset = 0;
  for (const Tensor& p : parts) {
    STRATA_ASSIGN_OR_RETURN(const Tensor slice, whole.Slice(d, offset, offset + p.dim(d)));
    STRATA_RETURN_IF_ERROR(fn(p, slice));
    offset += p.dim(d);
  }
  return absl::OkStatus();
}

}  // namespace strata::cpu::internal
