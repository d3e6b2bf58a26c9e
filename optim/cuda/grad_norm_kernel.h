// GradNormCuda's kernels (grad_norm_kernel.cu): plain types, see runtime/cuda/cuda_status.h.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::optim::internal {

// Doubles of workspace LaunchL2Norm takes for n elements: one partial sum per block.
int64_t L2NormWorkspaceDoubles(int64_t n);

// *norm = (float) sqrt(sum of x[i]^2 over [0, n)), the squares summed in double in a fixed order
// (blocks over grid-strided elements, then their partial sums in one block); on `stream`.
// Returns the launch's cudaError_t.
int LaunchL2Norm(const float* x, int64_t n, float* norm, double* workspace, CUstream_st* stream);

// A chunk of the per-gradient norms GlobalGradNorm combines (graph/ops/optimizer_ops.cc): at
// most kGlobalNormChunk pointers, passed by value; `offset` is the first one's index among all.
constexpr int kGlobalNormChunk = 64;
struct GlobalNormChunk {
  const float* values[kGlobalNormChunk];
  int count, offset;
};

// One chunk of the global norm: sum += v (the first squared_inputs values overall, already sums
// of squares) or v * v (the others), in double, in index order; the first chunk starts the sum at
// 0, the last writes *out = (float) sum, or its square root unless squared_output; the sum
// between chunks is kept in *acc. On `stream`; returns the launch's cudaError_t.
int LaunchGlobalNorm(const GlobalNormChunk& chunk, int squared_inputs, bool first, bool last,
                     bool squared_output, double* acc, float* out, CUstream_st* stream);

// Every x[i] times (float) factor(norm), factor as optim::ClipFactor / UnscaleAndClipFactor:
// coef = 1 / scale, times max_norm / (norm / scale + 1e-6) when max_norm > 0 and that is below 1,
// computed in double on the device from *norm; x is left alone when coef is 1 or *norm is not
// finite (a skipped step's gradients are not read again).
int LaunchClipByNorm(float* x, int64_t n, const float* norm, double max_norm, double scale,
                     CUstream_st* stream);

}  // namespace strata::optim::internal
