// The gradient norm and clipping of optim/grad_clip.h on a CUDA device, for a step whose
// gradients live there (Note [the step on a device] in graph/program.cc).
//
//   // grad: n floats on the device; norm: one float there; workspace: GradNormWorkspaceBytes(n).
//   STRATA_RETURN_IF_ERROR(GradNormCuda(grad, n, norm, workspace, stream));
//   STRATA_RETURN_IF_ERROR(ClipByNormCuda(grad, n, global_norm, /*max_norm=*/1.0, 1.0, stream));
//
// GradNormCuda is GlobalGradNorm over one buffer: the squares summed in double (in a fixed order,
// so a run repeats bit for bit; not the CPU's order, so the two may differ in the last bit of the
// rounded norm). ClipByNormCuda scales in place by UnscaleAndClipFactor(scale, max_norm, *norm),
// which the kernel computes from the norm in device memory: the host never waits for it. Both
// enqueue on `stream` and return.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

struct CUstream_st;

namespace strata::optim {

size_t GradNormWorkspaceBytes(int64_t n);

// *norm = (float) ||grad[0, n)||_2. workspace: device memory of GradNormWorkspaceBytes(n) bytes,
// 8-byte aligned. Errors: n < 0, a null buffer, a failed launch.
absl::Status GradNormCuda(const float* grad, int64_t n, float* norm, double* workspace,
                          CUstream_st* stream);

// GlobalGradNorm's combination on the device: *out = (float) sqrt(sum over norms of v^2), the
// first squared_inputs of the norms being sums of squares already (taken as they are), or the sum
// itself with squared_output; in double, in order, as on the CPU. Each pointer is one float on the
// device. acc: one double of device scratch. Errors: a null pointer, squared_inputs outside
// [0, count], a failed launch.
// `norm_at(i)` gives the i-th of `count` pointers, so that a caller needs no array of them.
absl::Status GlobalNormCuda(int count, absl::FunctionRef<const float*(int)> norm_at,
                            int squared_inputs, bool squared_output, float* out, double* acc,
                            CUstream_st* stream);

// grad[0, n) times (float) UnscaleAndClipFactor(scale, max_norm, *norm) where that is not 1 and
// *norm is finite (optim/grad_clip.h); max_norm 0 only unscales, scale 1 only clips. Errors:
// n < 0, a null buffer, scale <= 0, max_norm < 0, a failed launch.
absl::Status ClipByNormCuda(float* grad, int64_t n, const float* norm, double max_norm,
                            double scale, CUstream_st* stream);

}  // namespace strata::optim
