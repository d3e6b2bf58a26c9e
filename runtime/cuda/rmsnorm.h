// cpu::RmsNormForward and cpu::RmsNormBackward (runtime/cpu/rmsnorm.h) on a CUDA device.
//
//   STRATA_RETURN_IF_ERROR(cuda::RmsNormForward(stream, x, gamma, 1e-6f, y, rstd));
//   Tensor ws = ...;  // on the device, cuda::RmsNormBackwardWorkspaceBytes(x.shape()) bytes
//   STRATA_RETURN_IF_ERROR(cuda::RmsNormBackward(stream, x, gamma, rstd, dy, dx, dgamma, ws));
//
// f32, contiguous, every tensor on the CUDA device. Shapes, outputs and semantics are the CPU
// kernel's, and so is the saved statistic (one 1/sqrt(mean(x^2) + eps) per row, in row order), so
// either backward takes either forward's rstd. One block per row, f32 sums. dgamma is summed
// deterministically in two passes through `workspace` (no atomics): row groups' column sums, then
// their sum in group order; bitwise reproducible for a given shape.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/shape.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

using cpu::GradMode;

absl::Status RmsNormForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma, float eps,
                            const Tensor& y, const Tensor& rstd);

// Bytes of device workspace RmsNormBackward needs for x of shape `x`; none is needed (workspace
// may be undefined) when dgamma is not given.
size_t RmsNormBackwardWorkspaceBytes(const Shape& x);

// As cpu::RmsNormBackward, with `workspace` before `mode`. dx may alias dy.
absl::Status RmsNormBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                             const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                             const Tensor& dgamma, const Tensor& workspace,
                             GradMode mode = GradMode::kOverwrite);

}  // namespace strata::cuda
