#include "runtime/cuda/copy.h"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/copy_kernel.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/elementwise.h"
#include "runtime/status.h"

namespace strata::cuda {

absl::Status CopyStrided(CUstream_st* stream, const Tensor& src, const Tensor& dst) {
  constexpr char kOp[] = "CopyStrided";
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "src", src));
  STRATA_RETURN_IF_ERROR(CheckDType(kOp, "dst", dst, src.dtype()));
  STRATA_RETURN_IF_ERROR(CheckShape(kOp, "dst", dst, src.shape()));
  STRATA_RETURN_IF_ERROR(CheckOnCuda(kOp, "src", src));
  STRATA_RETURN_IF_ERROR(CheckOnCuda(kOp, "dst", dst));
  if (src.numel() == 0) return absl::OkStatus();
  const size_t bytes = SizeOf(src.dtype());
  if (bytes != 1 && bytes != 2 && bytes != 4 && bytes != 8) {
    return absl::UnimplementedError(
        absl::StrCat(kOp, ": src ", src.ToString(), " has ", bytes, "-byte elements"));
  }
  STRATA_ASSIGN_OR_RETURN(const internal::StridedView s, internal::ViewOf(kOp, "src", src));
  STRATA_ASSIGN_OR_RETURN(const internal::StridedView d, internal::ViewOf(kOp, "dst", dst));
  return CudaLaunchStatus(
      internal::LaunchCopyStrided(s, d, src.numel(), static_cast<int>(bytes), stream), kOp);
}

absl::Status TransposeCopy(CUstream_st* stream, const Tensor& src, int dim0, int dim1,
                           const Tensor& dst) {
  STRATA_RETURN_IF_ERROR(CheckDefined("TransposeCopy", "src", src));
  absl::StatusOr<Tensor> view = src.Transpose(dim0, dim1);
  if (!view.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("TransposeCopy: cannot swap dimensions ", dim0,
                                                   " and ", dim1, " of src ", src.ToString()));
  }
  return CopyStrided(stream, *view, dst);
}

absl::Status ReshapeCopy(CUstream_st* stream, const Tensor& src, const Tensor& dst) {
  constexpr char kOp[] = "ReshapeCopy";
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "src", src));
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "dst", dst));
  if (src.numel() != dst.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": src ", src.ToString(), " and dst ",
                                                   dst.ToString(), " differ in element count"));
  }
  // View whichever side can be viewed in the other's shape; the copy does the rest.
  absl::StatusOr<Tensor> dst_as_src = dst.Reshape(src.shape().dims());
  if (dst_as_src.ok()) return CopyStrided(stream, src, *dst_as_src);
  absl::StatusOr<Tensor> src_as_dst = src.Reshape(dst.shape().dims());
  if (src_as_dst.ok()) return CopyStrided(stream, *src_as_dst, dst);
  return absl::InvalidArgumentError(absl::StrCat(
      kOp, ": neither src ", src.ToString(), " nor dst ", dst.ToString(),
      " can be viewed in the other's shape; make one of them contiguous"));
}

namespace {

// Checks that `parts` tile `whole` along `dim` (before anything is copied) and then calls
// fn(part, slice of whole) for each, as the CPU kernel's ForEachPart.
template <typename Fn>
absl::Status ForEachPart(absl::string_view op, absl::string_view whole_name,
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
                                                     ", expected dtype ",
                                                     DTypeName(whole.dtype()), " like ",
                                                     whole_name, " ", whole.ToString()));
    }
    bool same = p.rank() == rank;
    for (int k = 0; same && k < rank; ++k) same = k == d || p.dim(k) == whole.dim(k);
    if (!same) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": part ", i, " is ", p.ToString(),
                                                     ", which differs from ", whole_name, " ",
                                                     whole.ToString(), " outside dimension ", d));
    }
    STRATA_RETURN_IF_ERROR(CheckOnCuda(op, "part", p));
    total += p.dim(d);
  }
  if (total != whole.dim(d)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": the parts add up to ", total,
                                                   " along dimension ", d, ", but ", whole_name,
                                                   " ", whole.ToString(), " has ", whole.dim(d)));
  }
  STRATA_RETURN_IF_ERROR(CheckOnCuda(op, whole_name, whole));
  int64_t offset = 0;
  for (const Tensor& p : parts) {
    STRATA_ASSIGN_OR_RETURN(const Tensor slice, whole.Slice(d, offset, offset + p.dim(d)));
    STRATA_RETURN_IF_ERROR(fn(p, slice));
    offset += p.dim(d);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Concat(CUstream_st* stream, absl::Span<const Tensor> inputs, int dim,
                    const Tensor& out) {
  return ForEachPart("Concat", "out", inputs, dim, out,
                     [stream](const Tensor& part, const Tensor& slice) {
                       return CopyStrided(stream, part, slice);
                     });
}

absl::Status Split(CUstream_st* stream, const Tensor& in, int dim, absl::Span<const Tensor> outs) {
  return ForEachPart("Split", "in", outs, dim, in,
                     [stream](const Tensor& part, const Tensor& slice) {
                       return CopyStrided(stream, slice, part);
                     });
}

}  // namespace strata::cuda
