// The dropout kernel (dropout_kernel.cu): plain types, see cuda_status.h.
#pragma once

#include <cstdint>

#include "runtime/cuda/elementwise_kernel.h"

struct CUstream_st;

namespace strata::cuda::internal {

// The mask's parameters as runtime/cpu/dropout.cc computes them from cpu::DropoutParams.
struct DropoutMask {
  uint64_t seed = 0;        // the Philox key
  uint32_t step = 0;        // counter word 2
  uint32_t stream = 0;      // counter word 3
  int64_t first_index = 0;  // g of element 0 (>= 0)
  uint32_t threshold = 0;   // kept iff the draw's top 24 bits are >= threshold: ceil(p 2^24)
  float scale = 1.0f;       // 1 / (1 - p), computed in f32
};

// out = x * (kept ? scale : 0) over the n elements of the logical row-major order; element i
// draws from Philox4x32-10 at counter ((first_index + i) / 4, step, stream), word
// (first_index + i) % 4, as the CPU kernel. Returns the launch's cudaError_t.
int LaunchDropout(ElemType type, const StridedView& x, const StridedView& out, int64_t n,
                  const DropoutMask& mask, CUstream_st* stream);

}  // namespace strata::cuda::internal
