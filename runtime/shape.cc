#include "runtime/shape.h"

#include <algorithm>

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
  // numel() must not overflow (a file or a user may claim any sizes); an empty shape is fine.
  if (std::find(dims.begin(), dims.end(), 0) == dims.end()) {
    int64_t numel = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
      if (__builtin_mul_overflow(numel, dims[i], &numel)) {
        return absl::InvalidArgumentError(absl::StrCat("shape [", absl::StrJoin(dims, ", "),
                                                       "] has more than 2^63 - 1 elements"));
      }
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
  // A zero anywhere makes the product 0, even after sizes whose partial product would overflow.
  if (std::find(dims_.begin(), dims_.end(), 0) != dims_.end()) return 0;
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
