// cpu::Matmul, MatmulAdd, BatchedMatmul and MatmulBackward (runtime/cpu/gemm.h) on a CUDA device,
// through cuBLAS (cublasGemmEx, cublasGemmStridedBatchedEx).
//
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<CublasHandle> blas, CublasHandle::Create(0));
//   CublasHandle* h = blas.get();                                     // one per stream
//   STRATA_RETURN_IF_ERROR(Matmul(stream, h, a, b, out));                       // out = a @ b
//   STRATA_RETURN_IF_ERROR(Matmul(stream, h, a, w, out, false, true));          // out = a @ w^T
//   STRATA_RETURN_IF_ERROR(Matmul(stream, h, a, b, out, false, false, 1.0f, 1.0f));  // out +=
//   STRATA_RETURN_IF_ERROR(MatmulAdd(stream, h, x, w, bias, r, y, false, true));  // y = x w^T + ..
//   STRATA_RETURN_IF_ERROR(BatchedMatmul(stream, h, q, k, scores, false, true));  // q @ k^T
//   STRATA_RETURN_IF_ERROR(Matmul(stream, h, a, b, out, false, false, 1.0f, 0.0f,
//                                 GemmPrecision::kTf32));                       // tf32
//
// As every CUDA launcher: `stream` (a cudaStream_t) orders the work, the call returns once it is
// enqueued, errors come back as a Status (cuda_status.h, blas_handle.h). The cuBLAS handle comes
// right after the stream (a pointer, as the stream) and is bound to it by the call (blas_handle.h:
// one handle per stream).
//
// Operands are views as on the CPU: a 2-D operand (or each matrix of a 3-D one) may be any view
// with one unit stride, a transposed view being passed to cuBLAS as the transposed matrix with its
// leading dimension, no copy; operands with no unit stride are refused (call Contiguous). strata's
// tensors are row-major and cuBLAS's column-major: a row-major matrix is the column-major
// transpose, so out = A B runs as out^T = B^T A^T with the operands swapped.
//
// Types: a and b are both f32, both bf16 or both f16; out is f32 or a's type. Products accumulate
// in f32 (CUBLAS_COMPUTE_32F). `precision` applies to f32 operands: kF32 (the default) is exact
// fp32 arithmetic, within 1e-5 of the CPU kernel norm-wise; kTf32 lets cuBLAS round the operands
// to tf32 on tensor cores (about 1e-3 relative); kBf16 rounds them to bf16 on tensor cores
// (CUBLAS_COMPUTE_32F_FAST_16BF), which is exact for operands that hold bf16 values already, as a
// mixed-precision step's do (Note [mixed precision]): the products of bf16 values are exact in
// f32 and accumulate in f32, so the result is fp32 arithmetic's within f32 rounding, at tensor-core
// speed, with no bf16 copy of either operand. bf16 and f16 operands always run on tensor cores.
#pragma once

#include "absl/status/status.h"
#include "runtime/cuda/blas_handle.h"
#include "runtime/tensor.h"

struct CUstream_st;

namespace strata::cuda {

enum class GemmPrecision { kF32, kTf32, kBf16 };

// out (M, N) = alpha * op(a) @ op(b) + beta * out; a is (M, K), or (K, M) when trans_a; b is
// (K, N), or (N, K) when trans_b. With beta == 0, out is not read (NaN in it does not show).
absl::Status Matmul(CUstream_st* stream, CublasHandle* blas, const Tensor& a, const Tensor& b,
                    const Tensor& out, bool trans_a = false, bool trans_b = false,
                    float alpha = 1.0f, float beta = 0.0f,
                    GemmPrecision precision = GemmPrecision::kF32);

// out (M, N) = op(a) @ op(b) + bias + addend: bias (N) is added to every row, addend (M, N,
// contiguous) elementwise; either may be undefined; both have out's type. bias + addend is
// written into out first (one small kernel), then cuBLAS adds the product (beta = 1). An addend
// needs a row-major out (as on the CPU).
absl::Status MatmulAdd(CUstream_st* stream, CublasHandle* blas, const Tensor& a, const Tensor& b,
                       const Tensor& bias, const Tensor& addend, const Tensor& out,
                       bool trans_a = false, bool trans_b = false,
                       GemmPrecision precision = GemmPrecision::kF32);

// The same per batch: a (B, M, K), b (B, K, N), out (B, M, N) (transposed as in Matmul), any
// batch strides of a and b (0 broadcasts one matrix to the batch); out's matrices must not alias.
// One strided-batched cuBLAS call.
absl::Status BatchedMatmul(CUstream_st* stream, CublasHandle* blas, const Tensor& a,
                           const Tensor& b, const Tensor& out, bool trans_a = false,
                           bool trans_b = false, float alpha = 1.0f, float beta = 0.0f,
                           GemmPrecision precision = GemmPrecision::kF32);

// Gradients of out = op(a) @ op(b): a, b as in Matmul (or BatchedMatmul when 3-D), dout (M, N)
// (or (B, M, N)); da has a's shape, db b's (overwritten; undefined = skipped); each f32 or the
// operands' type. Every argument is checked before either gradient is written.
absl::Status MatmulBackward(CUstream_st* stream, CublasHandle* blas, const Tensor& a,
                            const Tensor& b, const Tensor& dout, const Tensor& da,
                            const Tensor& db, bool trans_a = false, bool trans_b = false,
                            GemmPrecision precision = GemmPrecision::kF32);

}  // namespace strata::cuda
