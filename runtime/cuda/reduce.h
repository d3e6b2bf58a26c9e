// cpu::SumDim, MaxDim, MaxDimBackward and BroadcastDim (runtime/cpu/reduce.h) on a CUDA device:
// reductions along one dimension, and their backward broadcast.
//
//   // x (B, T, C) summed over T: viewed as (outer B, n T, inner C) -> out (B, C).
//   STRATA_RETURN_IF_ERROR(cuda::SumDim(stream, x, /*dim=*/1, out));
//   STRATA_RETURN_IF_ERROR(cuda::BroadcastDim(stream, dout, /*dim=*/1, dx));
//   STRATA_RETURN_IF_ERROR(cuda::MaxDim(stream, x, 1, out));
//   STRATA_RETURN_IF_ERROR(cuda::MaxDimBackward(stream, x, out, dout, 1, dx));
//
// f32, contiguous, every tensor on the CUDA device. Shapes and semantics are the CPU kernels'
// (sums in double; NaN propagates through MaxDim; MaxDimBackward's gradient goes to the first
// maximum). One thread per output element walks the reduced dimension in order (one block per row
// for SumDim over the last dimension), so results are deterministic; MaxDim over a long last
// dimension with few rows is slow (one thread per row).
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

absl::Status SumDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out);
absl::Status MaxDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out);
absl::Status MaxDimBackward(CUstream_st* stream, const Tensor& x, const Tensor& out,
                            const Tensor& dout, int dim, const Tensor& dx);
absl::Status BroadcastDim(CUstream_st* stream, const Tensor& x, int dim, const Tensor& out);

}  // namespace strata::cuda
