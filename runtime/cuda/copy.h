// cpu::CopyStrided, TransposeCopy, ReshapeCopy, Concat and Split (runtime/cpu/copy.h) on a CUDA
// device: data movement between layouts.
//
//   STRATA_RETURN_IF_ERROR(cuda::CopyStrided(stream, qkv.Permute({0, 2, 1, 3}).value(), q_bhtd));
//   STRATA_RETURN_IF_ERROR(cuda::TransposeCopy(stream, x, 1, 2, xt));  // xt = x, dims 1, 2 swapped
//   STRATA_RETURN_IF_ERROR(cuda::Concat(stream, {a, b}, 1, ab));  // backward: Split(dab, 1, ...)
//
// Any dtype of 1, 2, 4 or 8 bytes (the bits are moved unchanged); every tensor is on a CUDA
// device; source and destination may be strided views (at most 8 dimensions each once size-1
// dimensions are dropped and neighbours that step as one are merged). The backward of each is
// another of them: Concat <-> Split, a transpose copy is undone by the inverse transpose,
// ReshapeCopy by ReshapeCopy back.
//
// As every CUDA launcher: `stream` (a cudaStream_t) orders the work, the call returns once it is
// enqueued, and errors of the launch itself come back as a Status (cuda_status.h).
#pragma once

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// dst = src elementwise; same shape and dtype.
absl::Status CopyStrided(CUstream_st* stream, const Tensor& src, const Tensor& dst);

// dst (shape of src with dim0 and dim1 swapped) = src transposed.
absl::Status TransposeCopy(CUstream_st* stream, const Tensor& src, int dim0, int dim1,
                           const Tensor& dst);

// dst (any shape with src's element count) gets src's elements in row-major order.
absl::Status ReshapeCopy(CUstream_st* stream, const Tensor& src, const Tensor& dst);

// out = inputs joined along `dim`; all other sizes and the dtype must agree. One copy per input.
absl::Status Concat(CUstream_st* stream, absl::Span<const Tensor> inputs, int dim,
                    const Tensor& out);

// The inverse: outs are consecutive slices of `in` along `dim`.
absl::Status Split(CUstream_st* stream, const Tensor& in, int dim, absl::Span<const Tensor> outs);

}  // namespace strata::cuda
