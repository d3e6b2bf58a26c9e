// The copy kernel (copy_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

#include "runtime/cuda/elementwise_kernel.h"

struct CUstream_st;

namespace strata::cuda::internal {

// dst = src element by element over the n elements of their (shared) logical row-major order;
// elem_bytes is 1, 2, 4 or 8 (the bits are moved, never converted). Returns the launch's
// cudaError_t; cudaErrorInvalidValue for another element size.
int LaunchCopyStrided(const StridedView& src, const StridedView& dst, int64_t n, int elem_bytes,
                      CUstream_st* stream);

}  // namespace strata::cuda::internal
