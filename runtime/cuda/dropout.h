// cpu::DropoutForward and DropoutBackward (runtime/cpu/dropout.h) on a CUDA device, with the
// CPU's masks bit for bit: element i of the step's global batch is kept iff its Philox draw
// u_i >= p, and kept elements are scaled by 1 / (1 - p) (inverted dropout), on f32 or bf16
// tensors (fp32 arithmetic).
//
//   cpu::DropoutParams d{.p = 0.1f, .seed = seed, .step = step, .stream = 3, .first_index = 0};
//   STRATA_RETURN_IF_ERROR(cuda::DropoutForward(stream, x, d, y));     // y = x * mask / (1 - p)
//   STRATA_RETURN_IF_ERROR(cuda::DropoutBackward(stream, dy, d, dx));  // same mask, on dy
//
// The mask is a pure function of (seed, step, stream, global index), see Note [dropout masks
// from a counter] in runtime/cpu/dropout.h: a model may run its forward on one backend and its
// backward on the other, and a CUDA rank draws what a CPU rank would.
//
// As every CUDA launcher: `stream` (a cudaStream_t) orders the work, the call returns once it is
// enqueued, and errors of the launch itself come back as a Status (cuda_status.h).
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/dropout.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

using cpu::DropoutParams;

// x and out are on a CUDA device, of one shape and dtype (f32 or bf16), any strides (at most 8
// dimensions once merged, as cuda/elementwise.h); out may alias x. Errors name a p outside
// [0, 1), a negative first_index and mismatched tensors.
absl::Status DropoutForward(CUstream_st* stream, const Tensor& x, const DropoutParams& params,
                            const Tensor& out);
// dout and dx as x and out above: the forward's mask and scale applied to dout.
absl::Status DropoutBackward(CUstream_st* stream, const Tensor& dout, const DropoutParams& params,
                             const Tensor& dx);

}  // namespace strata::cuda
