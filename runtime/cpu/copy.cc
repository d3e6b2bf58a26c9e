#include "runtime/cpu/copy.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace strata::cpu {
namespace {

// Element copies of a fixed width, so the inner loops compile to plain moves.
template <typename T>
void CopyRows(const T* s, const Tensor& src, T* d, const Tensor& dst) {
  const Shape& shape = dst.shape();
  const int rank = shape.rank();
  const int64_t inner = shape[rank - 1];
  const int64_t rows = inner ? shape.numel() / inner : 0;
  const int64_t ss = src.stride(rank - 1), ds = dst.stride(rank - 1);
#pragma omp parallel for schedule(static) if (shape.numel() > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rest = r, so = 0, dof = 0;
    for (int dim = rank - 2; dim >= 0; --dim) {
      const int64_t i = rest % shape[dim];
      rest /= shape[dim];
      so += i * src.stride(dim);
      dof += i * dst.stride(dim);
    }
    if (ss == 1 && ds == 1) {
      std::memcpy(d + dof, s + so, inner * sizeof(T));
    } else {
      for (int64_t i = 0; i < inner; ++i) d[dof + i * ds] = s[so + i * ss];
    }
  }
}

// The last two dimensions are swapped between src and dst (src's inner stride is not 1 but its
// second-to-last is): copy 32 x 32 tiles so both sides stay in cache.
template <typename T>
void CopyTransposedTiles(const T* s, const Tensor& src, T* d, const Tensor& dst) {
  const Shape& shape = dst.shape();
  const int rank = shape.rank();
  const int64_t rows = shape[rank - 2], cols = shape[rank - 1];
  const int64_t outer = rows > 0 && cols > 0 ? shape.numel() / (rows * cols) : 0;
  const int64_t s_row = src.stride(rank - 2), s_col = src.stride(rank - 1);
  const int64_t d_row = dst.stride(rank - 2), d_col = dst.stride(rank - 1);
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) schedule(static) if (shape.numel() > (1 << 15))
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t t = 0; t < row_tiles * col_tiles; ++t) {
      int64_t rest = o, so = 0, dof = 0;
      for (int dim = rank - 3; dim >= 0; --dim) {
        const int64_t i = rest % shape[dim];
        rest /= shape[dim];
        so += i * src.stride(dim);
        dof += i * dst.stride(dim);
      }
      const int64_t r0 = (t / col_tiles) * kTile, c0 = (t % col_tiles) * kTile;
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) d[dof + r * d_row + c * d_col] = s[so + r * s_row + c * s_col];
    }
  }
}

template <typename T>
void CopyTyped(const Tensor& src, const Tensor& dst) {
  const T* s = static_cast<const T*>(src.raw_data());
  T* d = static_cast<T*>(dst.raw_data());
  const int rank = dst.rank();
  if (rank >= 2 && src.stride(rank - 1) != 1 && src.stride(rank - 2) == 1 &&
      dst.stride(rank - 1) == 1) {
    CopyTransposedTiles(s, src, d, dst);
  } else {
    CopyRows(s, src, d, dst);
  }
}

}  // namespace

absl::Status CopyStrided(const Tensor& src, const Tensor& dst) {
  constexpr char kOp[] = "CopyStrided";
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "src", src));
  STRATA_RETURN_IF_ERROR(CheckDType(kOp, "dst", dst, src.dtype()));
  STRATA_RETURN_IF_ERROR(CheckShape(kOp, "dst", dst, src.shape()));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(kOp, "src", src));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(kOp, "dst", dst));
  if (src.numel() == 0) return absl::OkStatus();
  if (src.rank() == 0) {
    std::memcpy(dst.raw_data(), src.raw_data(), SizeOf(src.dtype()));
    return absl::OkStatus();
  }
  if (src.is_contiguous() && dst.is_contiguous()) {
    std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
    return absl::OkStatus();
  }
  switch (SizeOf(src.dtype())) {
    case 1: CopyTyped<uint8_t>(src, dst); break;
    case 2: CopyTyped<uint16_t>(src, dst); break;
    case 4: CopyTyped<uint32_t>(src, dst); break;
    default: CopyTyped<uint64_t>(src, dst); break;
  }
  return absl::OkStatus();
}

absl::Status TransposeCopy(const Tensor& src, int dim0, int dim1, const Tensor& dst) {
  STRATA_ASSIGN_OR_RETURN(const Tensor view, src.Transpose(dim0, dim1));
  return CopyStrided(view, dst);
}

absl::Status ReshapeCopy(const Tensor& src, const Tensor& dst) {
  constexpr char kOp[] = "ReshapeCopy";
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "src", src));
  STRATA_RETURN_IF_ERROR(CheckDefined(kOp, "dst", dst));
  if (src.numel() != dst.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": src ", src.ToString(), " and dst ",
                                                   dst.ToString(), " differ in element count"));
  }
  // View whichever side can be viewed in the other's shape; the copy does the rest.
  absl::StatusOr<Tensor> dst_as_src = dst.Reshape(src.shape().dims());
  if (dst_as_src.ok()) return CopyStrided(src, *dst_as_src);
  absl::StatusOr<Tensor> src_as_dst = src.Reshape(dst.shape().dims());
  if (src_as_dst.ok()) return CopyStrided(*src_as_dst, dst);
  return absl::InvalidArgumentError(absl::StrCat(
      kOp, ": neither src ", src.ToString(), " nor dst ", dst.ToString(),
      " can be viewed in the other's shape; make one of them contiguous"));
}

namespace {

// Checks that `parts` tile `whole` along `dim` and calls fn(part, slice of whole) for each.
template <typename Fn>
absl::Status ForEachPart(absl::string_view op, absl::Span<const Tensor> parts, int dim,
                         const Tensor& whole, Fn fn) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, "whole", whole));
  const int rank = whole.rank();
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": dimension ", dim, " out of range for ", whole.ToString()));
  }
  int64_t offset = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    const std::string name = absl::StrCat("part ", i);
    STRATA_RETURN_IF_ERROR(CheckDType(op, name, p, whole.dtype()));
    bool same = p.rank() == rank;
    for (int k = 0; same && k < rank; ++k) same = k == d || p.dim(k) == whole.dim(k);
    if (!same) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", p.ToString(),
                                                     ", which differs from ", whole.ToString(),
                                                     " outside dimension ", d));
    }
    offset += p.dim(d);
  }
  if (offset != whole.dim(d)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": the parts add up to ", offset,
                                                   " along dimension ", d, ", but ",
                                                   whole.ToString(), " has ", whole.dim(d)));
  }
  offset = 0;
  for (const Tensor& p : parts) {
    STRATA_ASSIGN_OR_RETURN(const Tensor slice, whole.Slice(d, offset, offset + p.dim(d)));
    STRATA_RETURN_IF_ERROR(fn(p, slice));
    offset += p.dim(d);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Concat(absl::Span<const Tensor> inputs, int dim, const Tensor& out) {
  return ForEachPart("Concat", inputs, dim, out,
                     [](const Tensor& part, const Tensor& slice) { return CopyStrided(part, slice); });
}

absl::Status Split(const Tensor& in, int dim, absl::Span<const Tensor> outs) {
  return ForEachPart("Split", outs, dim, in,
                     [](const Tensor& part, const Tensor& slice) { return CopyStrided(slice, part); });
}

}  // namespace strata::cpu
