// The elementwise kernels (elementwise_kernel.cu): plain types, see cuda_status.h. StridedView,
// ElemType and the map in elementwise_map.cuh also serve activation, dropout and copy.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace strata::cuda::internal {

inline constexpr int kMaxViewRank = 8;

// A tensor's elements as a kernel addresses them. Contiguous: element i of the logical row-major
// order is data[i]. Otherwise its offset (in elements) comes from `size` and `stride`, outermost
// first: the tensor's dimensions with size-1 dimensions dropped and neighbours that step as one
// merged, so that any view of up to 8 such dimensions fits.
struct StridedView {
  void* data = nullptr;
  int rank = 0;
  bool contiguous = true;
  int64_t size[kMaxViewRank] = {};
  int64_t stride[kMaxViewRank] = {};
};

// The element types of the arithmetic kernels: f32, or bf16 loaded as f32 and stored rounded to
// nearest even.
enum class ElemType : int { kF32, kBf16 };

enum class ElementwiseOp : int {
  kAdd,         // a + b
  kAddScaled,   // a + alpha b
  kMul,         // a b
  kSub,         // a - b
  kDiv,         // a / b
  kScale,       // alpha x
  kScaleShift,  // alpha x + beta
  kSquare,      // x x
  kPow,         // powf(x, alpha)
  kExp,
  kLog,
  kSqrt,
  kRsqrt,       // 1 / sqrt(x), correctly rounded at both steps
};

// out = op(in[0], in[1]) elementwise over n elements; `in` holds 1 or 2 views as the op needs.
int LaunchElementwise(ElementwiseOp op, ElemType type, const StridedView* in, StridedView out,
                      int64_t n, float alpha, float beta, CUstream_st* stream);

// Contiguous (rows, cols) x and out, bias (cols): out = x + bias on every row.
int LaunchAddBias(ElemType type, const void* x, const void* bias, void* out, int64_t rows,
                  int64_t cols, CUstream_st* stream);
// Contiguous x (cols) copied to every row of out (rows, cols); elem_bytes is 2 or 4.
int LaunchBroadcastRows(int elem_bytes, const void* x, void* out, int64_t rows, int64_t cols,
                        CUstream_st* stream);
// dbias (cols) (+)= the column sums of the contiguous (rows, cols) dout, in f32, in an order that
// depends on rows and cols only.
int LaunchBiasGrad(ElemType type, const void* dout, void* dbias, int64_t rows, int64_t cols,
                   bool accumulate, CUstream_st* stream);

}  // namespace strata::cuda::internal
