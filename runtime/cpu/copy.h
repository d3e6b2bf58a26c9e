// Data movement between layouts: strided copies (transpose, permute, reshape), concat and split.
//
//   STRATA_RETURN_IF_ERROR(CopyStrided(qkv.Permute({0, 2, 1, 3}).value(), q_bhtd));  // any views
//   STRATA_RETURN_IF_ERROR(TransposeCopy(x, 1, 2, xt));       // xt = x with dims 1 and 2 swapped
//   STRATA_RETURN_IF_ERROR(Concat({a, b}, 1, ab));            // backward: Split(dab, 1, {da, db})
//
// Any dtype; source and destination may be strided. The backward of each is another of them:
// Concat <-> Split, a transpose copy is undone by the inverse transpose, ReshapeCopy by
// ReshapeCopy back.
#pragma once

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// dst = src elementwise; same shape and dtype. Parallel; a transposed inner block is copied in
// cache-sized tiles.
absl::Status CopyStrided(const Tensor& src, const Tensor& dst);

// dst (shape of src with dim0 and dim1 swapped) = src transposed.
absl::Status TransposeCopy(const Tensor& src, int dim0, int dim1, const Tensor& dst);

// dst (any shape with src's element count) gets src's elements in row-major order.
absl::Status ReshapeCopy(const Tensor& src, const Tensor& dst);

// out = inputs joined along `dim`; all other sizes and the dtype must agree.
absl::Status Concat(absl::Span<const Tensor> inputs, int dim, const Tensor& out);

// The inverse: outs are consecutive slices of `in` along `dim`.
absl::Status Split(const Tensor& in, int dim, absl::Span<const Tensor> outs);

}  // namespace strata::cpu
