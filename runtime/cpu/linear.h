// Fully connected layer in PyTorch's nn.Linear convention: y = x w^T + b.
//
//   STRATA_RETURN_IF_ERROR(LinearForward(x, w, b, y));            // x (..., in) -> y (..., out)
//   STRATA_RETURN_IF_ERROR(LinearForward(x, w, b, y, r));         // y = r + x w^T + b
//   STRATA_RETURN_IF_ERROR(LinearBackward(x, w, dy, dx, dw, db));  // any of dx, dw, db undefined
//   STRATA_RETURN_IF_ERROR(LinearBackward(x, w, dy, Tensor(), dw, db, GradMode::kAccumulate));
//   STRATA_RETURN_IF_ERROR(LinearBackward(Tensor(), w, dy, dx, Tensor(), db));  // no dw: no x
#pragma once

#include "absl/status/status.h"
#include "runtime/cpu/grad_mode.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// x (..., in) contiguous, w (out, in), b (out) or undefined, y (..., out) contiguous. f32. w may
// be any view with a unit stride (a transposed (in, out) weight is read in place). A defined
// `residual` (the shape of y, contiguous, not y itself) is added: a transformer block's
// x + proj(h) in the same pass that writes the bias, instead of a separate add over y.
absl::Status LinearForward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                           const Tensor& residual = Tensor());

// x (..., in), w (out, in), dy (..., out) -> dx (..., in), dw (out, in), db (out), all
// contiguous; undefined outputs are skipped, every defined one is checked before any is written.
// dx is overwritten; `mode` applies to dw and db. Only dw reads x: without dw, x may be undefined
// (a layer whose weight does not train need not keep its input for the backward). dx may be x
// itself (same bytes): dw is computed first.
absl::Status LinearBackward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor& dx,
                            const Tensor& dw, const Tensor& db,
                            GradMode mode = GradMode::kOverwrite);

}  // namespace strata::cpu
