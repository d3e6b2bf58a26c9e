// cpu::EmbeddingForward and cpu::EmbeddingBackward (runtime/cpu/embedding.h) on a CUDA device.
//
//   STRATA_RETURN_IF_ERROR(cuda::EmbeddingForward(stream, tokens, wte, x));  // (B, T) -> (B, T, C)
//   STRATA_RETURN_IF_ERROR(
//       cuda::EmbeddingBackward(stream, tokens, dx, dwte, GradMode::kAccumulate));
//
// Every tensor on the CUDA device: ids i32 or i64, table/dtable (V, C) f32, out/dout (..., C) f32,
// all contiguous. Shapes and semantics are the CPU kernel's. The backward sums repeated ids
// deterministically and in token order, the CPU kernel's order, so it equals the CPU's result bit
// for bit (see Note [a deterministic embedding gradient without sorting or atomics]).
//
// Unlike the CPU kernel, the ids' values are not checked (they are on the device): an id outside
// [0, V) gives a NaN row in the forward and is skipped by the backward.
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

using cpu::GradMode;

absl::Status EmbeddingForward(CUstream_st* stream, const Tensor& ids, const Tensor& table,
                              const Tensor& out);

// `mode` applies to dtable.
absl::Status EmbeddingBackward(CUstream_st* stream, const Tensor& ids, const Tensor& dout,
                               const Tensor& dtable, GradMode mode = GradMode::kOverwrite);

}  // namespace strata::cuda
