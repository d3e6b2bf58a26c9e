#include "runtime/shape.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace strata {

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(absl::MakeConstSpan(dims.begin(), dims.size())) {}

Shape::Shape(absl::Span<const int64_t> dims) : dims_(dims.begin(), dims.end()) {
  for (int64_t d : dims_) STRATA_CHECK(d >= 0, "negative size in shape ", ToString());
}

absl::StatusOr<Shape> Shape::Create(absl::Span<const int64_t> dims) {
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("shape [", absl::StrJoin(dims, ", "),
                                                     "] has negative size ", dims[i],
                                                     " in dimension ", i));
    }
  }
  return Shape(dims);
}

int64_t Shape::dim(int i) const {
  const int r = rank();
  const int k = i < 0 ? i + r : i;
  STRATA_CHECK(k >= 0 && k < r, "dimension ", i, " out of range for shape ", ToString());
  return dims_[k];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

std::string Shape::ToString() const { return absl::StrCat("[", absl::StrJoin(dims_, ", "), "]"); }

Dims ContiguousStrides(const Shape& shape) {
  Dims strides(shape.rank());
  int64_t s = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

}  // namespace strata
