// cpu::LayerNormForward and cpu::LayerNormBackward (runtime/cpu/layernorm.h) on a CUDA device.
//
//   STRATA_RETURN_IF_ERROR(cuda::LayerNormForward(stream, x, gamma, beta, 1e-5f, y, mean, rstd));
//   Tensor ws = ...;  // on the device, cuda::LayerNormBackwardWorkspaceBytes(x.shape()) bytes
//   STRATA_RETURN_IF_ERROR(
//       cuda::LayerNormBackward(stream, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, ws));
//
// f32, contiguous, every tensor on the CUDA device. Shapes, outputs and semantics are the CPU
// kernel's, and so are the saved statistics (one mean and one 1/sqrt(var + eps) per row, in row
// order), so either backward takes either forward's statistics. One block per row, f32 sums.
// dgamma and dbeta are summed deterministically in two passes through `workspace` (no atomics):
// row groups' column sums, then their sum in group order; bitwise reproducible for a given shape.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/shape.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

using cpu::GradMode;

absl::Status LayerNormForward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                              const Tensor& beta, float eps, const Tensor& y, const Tensor& mean,
                              const Tensor& rstd);

// Bytes of device workspace LayerNormBackward needs for x of shape `x` (any dtype, contiguous);
// none is needed (workspace may be undefined) when neither dgamma nor dbeta is given.
size_t LayerNormBackwardWorkspaceBytes(const Shape& x);

// As cpu::LayerNormBackward, with `workspace` before `mode`. dx may alias dy or residual.
absl::Status LayerNormBackward(CUstream_st* stream, const Tensor& x, const Tensor& gamma,
                               const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                               const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                               const Tensor& workspace, GradMode mode = GradMode::kOverwrite,
                               const Tensor& residual = Tensor());

}  // namespace strata::cuda
