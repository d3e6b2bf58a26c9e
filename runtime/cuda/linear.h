// cpu::LinearForward and LinearBackward (runtime/cpu/linear.h) on a CUDA device: y = x w^T + b in
// PyTorch's nn.Linear convention, through cuBLAS (runtime/cuda/gemm.h).
//
//   STRATA_RETURN_IF_ERROR(LinearForward(stream, h, x, w, b, y));     // (..., in) -> (..., out)
//   STRATA_RETURN_IF_ERROR(LinearForward(stream, h, x, w, b, y, r));  // y = r + x w^T + b
//   STRATA_RETURN_IF_ERROR(LinearBackward(stream, h, x, w, dy, dx, dw, db));  // any undefined
//   STRATA_RETURN_IF_ERROR(LinearBackward(stream, h, x, w, dy, Tensor(), dw, db,
//                                         GradMode::kAccumulate));
//   STRATA_RETURN_IF_ERROR(LinearBackward(stream, h, Tensor(), w, dy, dx, Tensor(), db));  // no x
//
// `stream` and `blas` (h, a CublasHandle*) as in gemm.h (the handle is bound to the stream by the
// call). Types: x, w and dy are all f32, all bf16 or all f16; y, dx and dw are f32 or that type;
// b and residual have y's type; db is f32. Products accumulate in f32; `precision` is gemm.h's
// (kTf32 lets f32 operands run on tensor cores).
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/cuda/blas_handle.h"
#include "runtime/cuda/gemm.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

using cpu::GradMode;

// x (..., in) contiguous, w (out, in), b (out) or undefined, y (..., out) contiguous. w may be
// any view with a unit stride (a transposed (in, out) weight is read in place). A defined
// `residual` (the shape of y, contiguous, not y itself) is added: bias + residual are written
// into y first, then cuBLAS adds the product (gemm.h's MatmulAdd).
absl::Status LinearForward(CUstream_st* stream, CublasHandle* blas, const Tensor& x,
                           const Tensor& w, const Tensor& b, const Tensor& y,
                           const Tensor& residual = Tensor(),
                           GemmPrecision precision = GemmPrecision::kF32);

// x (..., in), w (out, in), dy (..., out) -> dx (..., in), dw (out, in), db (out), all
// contiguous; undefined outputs are skipped, every defined one is checked before any is written.
// dx is overwritten; `mode` applies to dw and db. Only dw reads x: without dw, x may be undefined.
// dx may be x itself (same bytes): dw is computed first, on the same stream. db is a column sum of
// dy in f32, in a fixed order (bitwise reproducible).
absl::Status LinearBackward(CUstream_st* stream, CublasHandle* blas, const Tensor& x,
                            const Tensor& w, const Tensor& dy, const Tensor& dx, const Tensor& dw,
                            const Tensor& db, GradMode mode = GradMode::kOverwrite,
                            GemmPrecision precision = GemmPrecision::kF32);

}  // namespace strata::cuda
