// Elementwise arithmetic, forward and backward, on f32 or bf16 tensors (fp32 arithmetic).
//
//   STRATA_RETURN_IF_ERROR(Add(x, attn_out, x));               // residual, in place
//   STRATA_RETURN_IF_ERROR(AddScaled(grad, other, 0.5f, grad)); // grad += 0.5 * other
//   STRATA_RETURN_IF_ERROR(AddBias(y, b, y));                   // y (..., C) += b (C)
//   STRATA_RETURN_IF_ERROR(BiasGrad(dy, db, GradMode::kAccumulate));
//   STRATA_RETURN_IF_ERROR(Rsqrt(var, inv_std));
//
// All tensors of one call share one shape and dtype (no broadcasting except the bias along the
// last dimension, and BroadcastRows). Inputs and outputs may be strided views; an output may alias an input.
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// out = a + b. Backward: da = dout, db = dout.
absl::Status Add(const Tensor& a, const Tensor& b, const Tensor& out);
// out = a + alpha * b.
absl::Status AddScaled(const Tensor& a, const Tensor& b, float alpha, const Tensor& out);
// out = a * b.
absl::Status Mul(const Tensor& a, const Tensor& b, const Tensor& out);
// da = dout * b, db = dout * a; either may be undefined (skipped).
absl::Status MulBackward(const Tensor& a, const Tensor& b, const Tensor& dout, const Tensor& da,
                         const Tensor& db);
// out = alpha * x. Backward: dx = alpha * dout.
absl::Status Scale(const Tensor& x, float alpha, const Tensor& out);
// out = a - b.
absl::Status Sub(const Tensor& a, const Tensor& b, const Tensor& out);
// out = a / b (IEEE: a nonzero a over 0 is +-inf, 0 / 0 is NaN, as PyTorch).
absl::Status Div(const Tensor& a, const Tensor& b, const Tensor& out);
// out = alpha * x + beta.
absl::Status ScaleShift(const Tensor& x, float alpha, float beta, const Tensor& out);
// out = x ^ exponent (std::pow: a negative x to a non-integer power is NaN, as PyTorch).
absl::Status Pow(const Tensor& x, float exponent, const Tensor& out);
// out = exp(x), log(x) (-inf at 0, NaN below), sqrt(x), 1 / sqrt(x).
absl::Status Exp(const Tensor& x, const Tensor& out);
absl::Status Log(const Tensor& x, const Tensor& out);
absl::Status Sqrt(const Tensor& x, const Tensor& out);
absl::Status Rsqrt(const Tensor& x, const Tensor& out);

// x (..., C), bias (C) of x's dtype, out like x: out = x + bias on every row. Contiguous.
absl::Status AddBias(const Tensor& x, const Tensor& bias, const Tensor& out);
// x (C) -> out (..., C) of x's dtype: x on every row (a broadcast over the leading dimensions).
// Contiguous.
absl::Status BroadcastRows(const Tensor& x, const Tensor& out);
// dout (..., C) -> dbias (C): the sum over all leading dimensions. Contiguous.
absl::Status BiasGrad(const Tensor& dout, const Tensor& dbias,
                      GradMode mode = GradMode::kOverwrite);

}  // namespace strata::cpu
