// RoundToPrecision's kernel (round_to_precision_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

enum class RoundTarget : int { kBf16, kF16 };

// Rounds x[0, n) in place to bf16 or f16 and back to f32, on `stream`; returns the launch's
// cudaError_t.
int LaunchRoundToPrecision(float* x, int64_t n, RoundTarget target, CUstream_st* stream);

}  // namespace strata::cuda::internal
