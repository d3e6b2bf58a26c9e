// cpu::RoundToPrecision (runtime/cpu/round_to_precision.h) on a CUDA device, bit for bit the same:
// rounds f32 values in place to bf16 or f16 and keeps them as f32.
//
//   STRATA_RETURN_IF_ERROR(cuda::RoundToPrecision(stream, activation, DType::kBF16));
//
// As every CUDA launcher: `stream` (a cudaStream_t) orders the work, the call returns once it is
// enqueued, and errors of the launch itself come back as a Status (cuda_status.h).
#pragma once

#include "absl/status/status.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

// x: f32, contiguous, on a CUDA device. precision: kF32 (nothing to do), kBF16 or kF16.
absl::Status RoundToPrecision(CUstream_st* stream, const Tensor& x, DType precision);

}  // namespace strata::cuda
