// The reductions' kernels (reduce_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// The full tensor viewed as (outer, n, inner) around the reduced dimension; the reduced one as
// (outer, inner).
int LaunchSumDim(const float* x, int64_t outer, int64_t n, int64_t inner, float* out,
                 CUstream_st* stream);
int LaunchMaxDim(const float* x, int64_t outer, int64_t n, int64_t inner, float* out,
                 CUstream_st* stream);
int LaunchMaxDimBackward(const float* x, const float* out, const float* dout, int64_t outer,
                         int64_t n, int64_t inner, float* dx, CUstream_st* stream);
// out (outer, n, inner) = x (outer, inner) repeated.
int LaunchBroadcastDim(const float* x, int64_t outer, int64_t n, int64_t inner, float* out,
                       CUstream_st* stream);

}  // namespace strata::cuda::internal
