// The small kernels around the cuBLAS products of gemm.cc and linear.cc (gemm_kernel.cu, plain
// types, see cuda_status.h): what cuBLAS does not do for a product.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

// The element type of a GEMM operand or output.
enum class GemmElem : int { kF32, kBf16, kF16 };

// c (batch, m, n), element (i, r, k) at c[i * bs + r * rs + k * cs], = beta * c, with beta == 0
// writing zeros whatever c held (NaN included): a product whose inner dimension is 0.
int LaunchScaleMatrix(void* c, GemmElem elem, int64_t batch, int64_t m, int64_t n, int64_t bs,
                      int64_t rs, int64_t cs, float beta, CUstream_st* stream);

// c (m, n), element (r, k) at c[r * rs + k * cs], = bias[k] + addend[r * n + k], summed in f32
// and rounded once to c's type; bias (n) and addend (m, n, contiguous) have c's element type and
// either may be null (not both). addend may be c itself when c is contiguous.
int LaunchFillBiasAddend(void* c, GemmElem elem, int64_t m, int64_t n, int64_t rs, int64_t cs,
                         const void* bias, const void* addend, CUstream_st* stream);

// out[k] (+)= sum over r of x[r * cols + k]: x (rows, cols) contiguous of type `elem`, out (cols)
// f32; summed in f32 in a fixed order (no atomics). accumulate adds to out, else overwrites.
int LaunchColumnSums(const void* x, GemmElem elem, int64_t rows, int64_t cols, float* out,
                     bool accumulate, CUstream_st* stream);

}  // namespace strata::cuda::internal
