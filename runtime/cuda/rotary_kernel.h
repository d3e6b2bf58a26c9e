// Rotary's kernel (rotary_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// x, y (b, t, h, d), y may be x; table (>= t, d): cos then sin of each position's d / 2 angles.
// sign 1 rotates forward, -1 back (the backward).
int LaunchRotary(const float* x, const float* table, int64_t b, int64_t t, int64_t h, int64_t d,
                 float sign, float* y, CUstream_st* stream);

}  // namespace strata::cuda::internal
