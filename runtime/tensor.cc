#include "runtime/tensor.h"

#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace strata {
namespace {

int NormalizeDim(int dim, int rank) { return dim < 0 ? dim + rank : dim; }

absl::Status DimError(absl::string_view what, int dim, const Tensor& t) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": dimension ", dim, " out of range for tensor ", t.ToString()));
}

// Strides for viewing (sizes, strides) as `new_sizes` without copying, or false when the memory
// layout cannot express it. Walks both shapes from the innermost dimension, matching runs of
// dimensions that are contiguous with each other ("chunks").
bool ViewStrides(absl::Span<const int64_t> sizes, absl::Span<const int64_t> strides,
                 absl::Span<const int64_t> new_sizes, Dims& new_strides) {
  new_strides.assign(new_sizes.size(), 0);
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  if (numel == 0 || sizes.empty()) {
    new_strides = ContiguousStrides(Shape(new_sizes));
    return true;
  }
  int view_d = static_cast<int>(new_sizes.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1;
  int64_t view_numel = 1;
  for (int tensor_d = static_cast<int>(sizes.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= sizes[tensor_d];
    const bool chunk_ends =
        tensor_d == 0 || (sizes[tensor_d - 1] != 1 &&
                          strides[tensor_d - 1] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || new_sizes[view_d] == 1)) {
      new_strides[view_d] = view_numel * chunk_base_stride;
      view_numel *= new_sizes[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return false;
    if (tensor_d > 0) {
      chunk_base_stride = strides[tensor_d - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  return view_d == -1;
}

// Calls fn(src_offset, dst_offset, n) for each innermost row of `shape`, in parallel.
template <typename Fn>
void ForEachRow(const Shape& shape, absl::Span<const int64_t> a_strides,
                absl::Span<const int64_t> b_strides, Fn fn) {
  const int rank = shape.rank();
  if (rank == 0) {
    fn(0, 0, 1);
    return;
  }
  const int64_t inner = shape[rank - 1];
  const int64_t rows = inner == 0 ? 0 : shape.numel() / inner;
#pragma omp parallel for schedule(static) if (rows * inner > (1 << 15))
  for (int64_t row = 0; row < rows; ++row) {
    int64_t rest = row, a_off = 0, b_off = 0;
    for (int d = rank - 2; d >= 0; --d) {
      const int64_t i = rest % shape[d];
      rest /= shape[d];
      a_off += i * a_strides[d];
      b_off += i * b_strides[d];
    }
    fn(a_off, b_off, inner);
  }
}

}  // namespace

absl::StatusOr<Tensor> Tensor::Empty(const Shape& shape, DType dtype, Allocator& allocator,
                                     size_t alignment) {
  size_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<size_t>(shape.numel()), SizeOf(dtype), &bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat("tensor ", DTypeName(dtype), shape.ToString(),
                                                     ": its byte size overflows 64 bits"));
  }
  absl::StatusOr<Allocation> allocation = allocator.Allocate(bytes, alignment);
  if (!allocation.ok()) {
    return absl::Status(allocation.status().code(),
                        absl::StrCat("tensor ", DTypeName(dtype), shape.ToString(), ": ",
                                     allocation.status().message()));
  }
  Tensor t;
  t.storage_ = std::make_shared<Storage>(*std::move(allocation));
  t.shape_ = shape;
  t.strides_ = ContiguousStrides(shape);
  t.dtype_ = dtype;
  return t;
}

absl::StatusOr<Tensor> Tensor::Zeros(const Shape& shape, DType dtype, Allocator& allocator) {
  STRATA_ASSIGN_OR_RETURN(Tensor t, Empty(shape, dtype, allocator));
  if (t.device().host_addressable() && t.nbytes() > 0) std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::Wrap(void* data, const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.storage_ = std::make_shared<Storage>(data, shape.numel() * SizeOf(dtype), device);
  t.shape_ = shape;
  t.strides_ = ContiguousStrides(shape);
  t.dtype_ = dtype;
  return t;
}

absl::StatusOr<Tensor> Tensor::View(std::shared_ptr<Storage> storage, const Shape& shape,
                                    absl::Span<const int64_t> strides, int64_t offset,
                                    DType dtype) {
  if (storage == nullptr) return absl::InvalidArgumentError("Tensor::View: null storage");
  if (static_cast<int>(strides.size()) != shape.rank()) {
    return absl::InvalidArgumentError(absl::StrCat("Tensor::View: ", strides.size(),
                                                   " strides for shape ", shape.ToString()));
  }
  // The lowest and highest element offsets reached must lie inside the storage.
  int64_t lo = offset, hi = offset;
  if (shape.numel() > 0) {
    for (int d = 0; d < shape.rank(); ++d) {
      const int64_t span = (shape[d] - 1) * strides[d];
      (span < 0 ? lo : hi) += span;
    }
  }
  const int64_t capacity = static_cast<int64_t>(storage->bytes() / SizeOf(dtype));
  if (shape.numel() > 0 && (lo < 0 || hi >= capacity)) {
    return absl::OutOfRangeError(absl::StrCat(
        "Tensor::View: shape ", shape.ToString(), " strides [", absl::StrJoin(strides, ", "),
        "] offset ", offset, " reaches elements [", lo, ", ", hi, "] of a storage of ", capacity,
        " ", DTypeName(dtype), " elements"));
  }
  Tensor t;
  t.storage_ = std::move(storage);
  t.shape_ = shape;
  t.strides_.assign(strides.begin(), strides.end());
  t.offset_ = offset;
  t.dtype_ = dtype;
  return t;
}

int64_t Tensor::stride(int i) const {
  const int k = NormalizeDim(i, rank());
  STRATA_CHECK(k >= 0 && k < rank(), "stride ", i, " out of range for ", ToString());
  return strides_[k];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int d = rank() - 1; d >= 0; --d) {
    if (shape_[d] != 1 && strides_[d] != expected) return false;
    expected *= shape_[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  if (storage_ == nullptr) return nullptr;
  return static_cast<std::byte*>(storage_->data()) + offset_ * static_cast<int64_t>(SizeOf(dtype_));
}

absl::StatusOr<Tensor> Tensor::Slice(int dim, int64_t start, int64_t end, int64_t step) const {
  const int d = NormalizeDim(dim, rank());
  if (d < 0 || d >= rank()) return DimError("Slice", dim, *this);
  const int64_t size = shape_[d];
  if (step <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Slice: step ", step, " must be positive"));
  }
  if (start < 0 || end > size || start > end) {
    return absl::OutOfRangeError(absl::StrCat("Slice: range [", start, ", ", end,
                                              ") out of bounds for dimension ", dim, " of size ",
                                              size, " in tensor ", ToString()));
  }
  Tensor t = *this;
  Dims dims(shape_.dims().begin(), shape_.dims().end());
  dims[d] = (end - start + step - 1) / step;
  t.shape_ = Shape(dims);
  t.strides_[d] = strides_[d] * step;
  t.offset_ = offset_ + start * strides_[d];
  return t;
}

absl::StatusOr<Tensor> Tensor::Select(int dim, int64_t index) const {
  STRATA_ASSIGN_OR_RETURN(Tensor t, Slice(dim, index, index + 1));
  const int d = NormalizeDim(dim, rank());
  Dims dims(t.shape_.dims().begin(), t.shape_.dims().end());
  dims.erase(dims.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  t.shape_ = Shape(dims);
  return t;
}

absl::StatusOr<Tensor> Tensor::Reshape(absl::Span<const int64_t> sizes) const {
  Dims dims(sizes.begin(), sizes.end());
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < static_cast<int>(dims.size()); ++i) {
    if (dims[i] == -1 && infer < 0) {
      infer = i;
    } else if (dims[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("Reshape of ", ToString(), " to [",
                                                     absl::StrJoin(sizes, ", "),
                                                     "]: invalid size ", dims[i]));
    } else {
      known *= dims[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel() % known != 0) {
      return absl::InvalidArgumentError(absl::StrCat("Reshape of ", ToString(), " to [",
                                                     absl::StrJoin(sizes, ", "),
                                                     "]: cannot infer the -1 size"));
    }
    dims[infer] = numel() / known;
    known *= dims[infer];
  }
  if (known != numel()) {
    return absl::InvalidArgumentError(absl::StrCat("Reshape of ", ToString(), " (", numel(),
                                                   " elements) to [", absl::StrJoin(sizes, ", "),
                                                   "] (", known, " elements)"));
  }
  Dims new_strides;
  if (!ViewStrides(shape_.dims(), strides_, dims, new_strides)) {
    return absl::FailedPreconditionError(
        absl::StrCat("Reshape of ", ToString(), " to [", absl::StrJoin(dims, ", "),
                     "] needs a copy: the strides cannot express it (call Contiguous first)"));
  }
  Tensor t = *this;
  t.shape_ = Shape(dims);
  t.strides_ = new_strides;
  return t;
}

absl::StatusOr<Tensor> Tensor::Transpose(int dim0, int dim1) const {
  const int a = NormalizeDim(dim0, rank()), b = NormalizeDim(dim1, rank());
  if (a < 0 || a >= rank()) return DimError("Transpose", dim0, *this);
  if (b < 0 || b >= rank()) return DimError("Transpose", dim1, *this);
  Tensor t = *this;
  Dims dims(shape_.dims().begin(), shape_.dims().end());
  std::swap(dims[a], dims[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  t.shape_ = Shape(dims);
  return t;
}

absl::StatusOr<Tensor> Tensor::Permute(absl::Span<const int> order) const {
  if (static_cast<int>(order.size()) != rank()) {
    return absl::InvalidArgumentError(absl::StrCat("Permute of ", ToString(), ": order [",
                                                   absl::StrJoin(order, ", "), "] has ",
                                                   order.size(), " entries"));
  }
  Dims dims(rank()), strides(rank());
  // Inline, so that taking a view never touches the heap (a compiled step makes views per run).
  absl::InlinedVector<bool, kMaxInlineRank> seen(rank(), false);
  for (int i = 0; i < rank(); ++i) {
    const int d = NormalizeDim(order[i], rank());
    if (d < 0 || d >= rank() || seen[d]) {
      return absl::InvalidArgumentError(absl::StrCat("Permute of ", ToString(), ": order [",
                                                     absl::StrJoin(order, ", "),
                                                     "] is not a permutation"));
    }
    seen[d] = true;
    dims[i] = shape_[d];
    strides[i] = strides_[d];
  }
  Tensor t = *this;
  t.shape_ = Shape(dims);
  t.strides_ = strides;
  return t;
}

absl::StatusOr<Tensor> Tensor::Contiguous(Allocator& allocator) const {
  STRATA_RETURN_IF_ERROR(CheckDefined("Contiguous", "self", *this));
  STRATA_ASSIGN_OR_RETURN(Tensor t, Empty(shape_, dtype_, allocator));
  STRATA_RETURN_IF_ERROR(t.CopyFrom(*this));
  return t;
}

absl::Status Tensor::CopyFrom(const Tensor& src) const {
  STRATA_RETURN_IF_ERROR(CheckDefined("CopyFrom", "destination", *this));
  STRATA_RETURN_IF_ERROR(CheckDefined("CopyFrom", "source", src));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable("CopyFrom", "destination", *this));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable("CopyFrom", "source", src));
  if (src.shape() != shape_) {
    return absl::InvalidArgumentError(absl::StrCat("CopyFrom: source ", src.ToString(),
                                                   " and destination ", ToString(),
                                                   " differ in shape"));
  }
  if (numel() == 0) return absl::OkStatus();
  const size_t src_size = SizeOf(src.dtype()), dst_size = SizeOf(dtype_);
  const std::byte* s = static_cast<const std::byte*>(src.raw_data());
  std::byte* d = static_cast<std::byte*>(raw_data());
  if (src.dtype() == dtype_ && src.is_contiguous() && is_contiguous()) {
    std::memmove(d, s, nbytes());
    return absl::OkStatus();
  }
  const int64_t src_inner = src.rank() ? src.strides()[src.rank() - 1] : 1;
  const int64_t dst_inner = rank() ? strides_[rank() - 1] : 1;
  const DType src_dtype = src.dtype(), dst_dtype = dtype_;
  ForEachRow(shape_, src.strides(), strides_, [&](int64_t so, int64_t dof, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      ConvertElements(s + (so + i * src_inner) * src_size, src_dtype,
                      d + (dof + i * dst_inner) * dst_size, dst_dtype, 1);
    }
  });
  return absl::OkStatus();
}

absl::Status Tensor::Fill(double value) const {
  STRATA_RETURN_IF_ERROR(CheckDefined("Fill", "self", *this));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable("Fill", "self", *this));
  std::byte one[8];
  if (IsFloatingPoint(dtype_)) {
    const float f = static_cast<float>(value);
    ConvertElements(&f, DType::kF32, one, dtype_, 1);
  } else {
    // Clamp before the cast (a double outside int64 converts with undefined behaviour); NaN fills
    // 0, as ConvertElements does.
    int64_t v = 0;
    if (value >= 0x1p63) {
      v = std::numeric_limits<int64_t>::max();
    } else if (value <= -0x1p63) {
      v = std::numeric_limits<int64_t>::min();
    } else if (value == value) {
      v = static_cast<int64_t>(value);
    }
    ConvertElements(&v, DType::kI64, one, dtype_, 1);
  }
  const size_t size = SizeOf(dtype_);
  std::byte* d = static_cast<std::byte*>(raw_data());
  const int64_t inner = rank() ? strides_[rank() - 1] : 1;
  ForEachRow(shape_, strides_, strides_, [&](int64_t off, int64_t, int64_t n) {
    for (int64_t i = 0; i < n; ++i) std::memcpy(d + (off + i * inner) * size, one, size);
  });
  return absl::OkStatus();
}

std::string Tensor::ToString() const {
  if (!defined()) return "undefined";
  std::string s = absl::StrCat(DTypeName(dtype_), shape_.ToString());
  if (!is_contiguous()) absl::StrAppend(&s, " strides [", absl::StrJoin(strides_, ", "), "]");
  if (!device().is_cpu()) absl::StrAppend(&s, " on ", device().ToString());
  return s;
}

absl::Status CheckDefined(absl::string_view op, absl::string_view name, const Tensor& t) {
  if (t.defined()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is an undefined tensor"));
}

absl::Status CheckDType(absl::string_view op, absl::string_view name, const Tensor& t, DType dtype) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, name, t));
  if (t.dtype() == dtype) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                 ", expected dtype ", DTypeName(dtype)));
}

absl::Status CheckRank(absl::string_view op, absl::string_view name, const Tensor& t, int rank) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, name, t));
  if (t.rank() == rank) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": ", name, " is ", t.ToString(), ", expected rank ", rank));
}

absl::Status CheckShape(absl::string_view op, absl::string_view name, const Tensor& t,
                        const Shape& expected) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, name, t));
  if (t.shape() == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                 ", expected shape ", expected.ToString()));
}

absl::Status CheckContiguous(absl::string_view op, absl::string_view name, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckDefined(op, name, t));
  if (t.is_contiguous()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                 ", which is not contiguous (call Contiguous)"));
}

absl::Status CheckHostAddressable(absl::string_view op, absl::string_view name, const Tensor& t) {
  if (t.device().host_addressable()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.ToString(),
                                                 ", which the CPU cannot address"));
}

absl::Status CheckF32Contiguous(absl::string_view op, absl::string_view name, const Tensor& t) {
  STRATA_RETURN_IF_ERROR(CheckDType(op, name, t, DType::kF32));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable(op, name, t));
  return CheckContiguous(op, name, t);
}

absl::Status CheckF32Contiguous(absl::string_view op, absl::string_view name, const Tensor& t,
                                const Shape& expected) {
  STRATA_RETURN_IF_ERROR(CheckF32Contiguous(op, name, t));
  return CheckShape(op, name, t, expected);
}

}  // namespace strata
