// cpu::Add, Mul, ... (runtime/cpu/elementwise.h) on a CUDA device: elementwise arithmetic,
// forward and backward, on f32 or bf16 tensors (fp32 arithmetic, bf16 stored rounded to nearest
// even).
//
//   STRATA_RETURN_IF_ERROR(cuda::Add(stream, x, attn_out, x));                 // residual in place
//   STRATA_RETURN_IF_ERROR(cuda::AddScaled(stream, grad, other, 0.5f, grad));  // += 0.5 other
//   STRATA_RETURN_IF_ERROR(cuda::AddBias(stream, y, b, y));                     // (..., C) += (C)
//   STRATA_RETURN_IF_ERROR(cuda::BiasGrad(stream, dy, db, GradMode::kAccumulate));
//   STRATA_RETURN_IF_ERROR(cuda::Rsqrt(stream, var, inv_std));
//
// All tensors of one call are on a CUDA device and share one shape and dtype (no broadcasting
// except the bias along the last dimension, and BroadcastRows). Inputs and outputs may be strided
// views (of at most 8 dimensions once size-1 dimensions are dropped and neighbours that step as
// one are merged); an output may alias an input. Results are the CPU kernel's bit for bit, except
// Exp, Log and Pow (the device's expf, logf and powf may differ in the last bit), BiasGrad (its
// sums run in another order), and AddScaled and ScaleShift, which round once (a fused
// multiply-add, as the CPU build for an FMA machine does) where a CPU build without FMA rounds
// twice.
//
// As every CUDA launcher: `stream` (a cudaStream_t) orders the work, the call returns once it is
// enqueued, and errors of the launch itself come back as a Status (cuda_status.h).
#pragma once

#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/cuda/elementwise_kernel.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

using cpu::GradMode;

// out = a + b. Backward: da = dout, db = dout.
absl::Status Add(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& out);
// out = a + alpha * b.
absl::Status AddScaled(CUstream_st* stream, const Tensor& a, const Tensor& b, float alpha,
                       const Tensor& out);
// out = a * b.
absl::Status Mul(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& out);
// da = dout * b, db = dout * a; either may be undefined (skipped).
absl::Status MulBackward(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& dout,
                         const Tensor& da, const Tensor& db);
// out = alpha * x. Backward: dx = alpha * dout.
absl::Status Scale(CUstream_st* stream, const Tensor& x, float alpha, const Tensor& out);
// out = a - b.
absl::Status Sub(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& out);
// out = a / b (IEEE: a nonzero a over 0 is +-inf, 0 / 0 is NaN, as PyTorch).
absl::Status Div(CUstream_st* stream, const Tensor& a, const Tensor& b, const Tensor& out);
// out = alpha * x + beta.
absl::Status ScaleShift(CUstream_st* stream, const Tensor& x, float alpha, float beta,
                        const Tensor& out);
// out = x ^ exponent (powf: a negative x to a non-integer power is NaN, as PyTorch).
absl::Status Pow(CUstream_st* stream, const Tensor& x, float exponent, const Tensor& out);
// out = exp(x), log(x) (-inf at 0, NaN below), sqrt(x), 1 / sqrt(x).
absl::Status Exp(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status Log(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status Sqrt(CUstream_st* stream, const Tensor& x, const Tensor& out);
absl::Status Rsqrt(CUstream_st* stream, const Tensor& x, const Tensor& out);

// x (..., C), bias (C) of x's dtype, out like x: out = x + bias on every row. Contiguous.
absl::Status AddBias(CUstream_st* stream, const Tensor& x, const Tensor& bias, const Tensor& out);
// x (C) -> out (..., C) of x's dtype: x on every row (a broadcast over the leading dimensions).
// Contiguous.
absl::Status BroadcastRows(CUstream_st* stream, const Tensor& x, const Tensor& out);
// dout (..., C) -> dbias (C): the sum over all leading dimensions. Contiguous.
absl::Status BiasGrad(CUstream_st* stream, const Tensor& dout, const Tensor& dbias,
                      GradMode mode = GradMode::kOverwrite);

namespace internal {

// Shared with the activation and dropout launchers.
//
// All tensors defined, on a CUDA device, of one shape and one dtype (f32 or bf16); the errors are
// cpu::internal::CheckSameShapeAndDType's, with "not on a CUDA device" for a host tensor.
absl::Status CheckSameShapeAndDType(
    absl::string_view op, std::initializer_list<std::pair<absl::string_view, const Tensor*>> args);
// t's elements as a kernel addresses them; fails (naming op and name) for a view of more than
// kMaxViewRank dimensions after merging.
absl::StatusOr<StridedView> ViewOf(absl::string_view op, absl::string_view name, const Tensor& t);
inline ElemType ElemTypeOf(const Tensor& t) {
  return t.dtype() == DType::kF32 ? ElemType::kF32 : ElemType::kBf16;
}

}  // namespace internal
}  // namespace strata::cuda
