// Matrix products on strided views without copies: strata's own AVX-512 sgemm where A is
// row-major (Note [own sgemm] in internal/sgemm.cc), OpenBLAS's otherwise.
//
//   STRATA_RETURN_IF_ERROR(Matmul(a, b, out));                          // out = a @ b
//   STRATA_RETURN_IF_ERROR(Matmul(a, w, out, false, /*trans_b=*/true)); // out = a @ w^T
//   STRATA_RETURN_IF_ERROR(Matmul(a, b, out, false, false, 1.0f, 1.0f)); // out += a @ b
//   STRATA_RETURN_IF_ERROR(MatmulAdd(x, w, bias, r, y, false, true));    // y = x @ w^T + bias + r
//   STRATA_RETURN_IF_ERROR(BatchedMatmul(q, k, scores, false, true));   // per batch q @ k^T
//
// A 2-D operand may be any view with one unit stride: a transposed view (column stride 1) is
// passed to sgemm as the transposed matrix with its leading dimension, so x.Transpose(0, 1) costs
// nothing. Operands with no unit stride are refused (call Contiguous).
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace strata::cpu {

// out (M, N) = alpha * op(a) @ op(b) + beta * out; a is (M, K), or (K, M) when trans_a; b is
// (K, N), or (N, K) when trans_b. f32.
absl::Status Matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a = false,
                    bool trans_b = false, float alpha = 1.0f, float beta = 0.0f);

// out (M, N) = op(a) @ op(b) + bias + addend: bias (N) is added to every row, addend (M, N,
// contiguous) elementwise; either may be undefined. One pass over out: where strata's own sgemm
// runs the sum starts in its registers, else it is written first and sgemm adds to it.
absl::Status MatmulAdd(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& addend,
                       const Tensor& out, bool trans_a = false, bool trans_b = false);

// The same per batch: a (B, M, K), b (B, K, N), out (B, M, N) (transposed as in Matmul), any
// batch strides (0 broadcasts). Small products run one per thread, see Note [batched sgemm:
// threads over the batch] in gemm.cc.
absl::Status BatchedMatmul(const Tensor& a, const Tensor& b, const Tensor& out,
                           bool trans_a = false, bool trans_b = false, float alpha = 1.0f,
                           float beta = 0.0f);

// Gradients of out = op(a) @ op(b): a, b as in Matmul (or BatchedMatmul when 3-D), dout (M, N)
// (or (B, M, N)); da has a's shape, db b's (overwritten; undefined = skipped). Every argument is
// checked before either gradient is written.
absl::Status MatmulBackward(const Tensor& a, const Tensor& b, const Tensor& dout, const Tensor& da,
                            const Tensor& db, bool trans_a = false, bool trans_b = false);

}  // namespace strata::cpu
