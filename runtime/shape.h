// Tensor shapes: a short list of non-negative dimension sizes.
//
//   Shape s{8, 256, 384};                        // internal use: sizes known to be valid
//   absl::StatusOr<Shape> u = Shape::Create(user_dims);   // user input: negative sizes rejected
//   s.rank() == 3; s[2] == 384; s.numel() == 786432; s.ToString() == "[8, 256, 384]"
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace strata {

inline constexpr int kMaxInlineRank = 6;
using Dims = absl::InlinedVector<int64_t, kMaxInlineRank>;

class Shape {
 public:
  Shape() = default;  // rank 0: a scalar with one element
  // Aborts on a negative size: use Create() for sizes that come from a user or a file.
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(absl::Span<const int64_t> dims);

  static absl::StatusOr<Shape> Create(absl::Span<const int64_t> dims);

  int rank() const { return static_cast<int>(dims_.size()); }
  int64_t operator[](int i) const { return dims_[i]; }
  // Dimension i, where negative i counts from the end (-1 is the last). Aborts when out of range.
  int64_t dim(int i) const;
  int64_t numel() const;
  absl::Span<const int64_t> dims() const { return dims_; }
  std::string ToString() const;

  friend bool operator==(const Shape& a, const Shape& b) { return a.dims_ == b.dims_; }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

 private:
  Dims dims_;
};

// Row-major (C-order) strides in elements for `shape`.
Dims ContiguousStrides(const Shape& shape);

}  // namespace strata
