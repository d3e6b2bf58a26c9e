#include "runtime/cpu/dropout.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/dropout_checks.h"
#include "runtime/cpu/internal/elementwise_loop.h"
#include "runtime/cpu/philox.h"

namespace strata::cpu {
namespace {

using internal::CheckSameShapeAndDType;
using internal::Load;
using internal::OffsetOf;
using internal::Store;

// Elements per parallel chunk: a multiple of 4, so that a chunk shares a counter with its
// neighbour only where first_index is not a multiple of 4 (harmless: draws are pure).
constexpr int64_t kChunk = 4096;

// out = x * mask / (1 - p) over the elements in logical row-major order.
template <typename T>
void Apply(const Tensor& x, const DropoutParams& d, const Tensor& out) {
  const int64_t n = out.numel();
  const T* src = static_cast<const T*>(x.raw_data());
  T* dst = static_cast<T*>(out.raw_data());
  const bool contiguous = x.is_contiguous() && out.is_contiguous();
  // u >= p with u = k / 2^24 is k >= ceil(p 2^24); p 2^24 is exact in double.
  const uint32_t threshold = static_cast<uint32_t>(std::ceil(static_cast<double>(d.p) * 16777216.0));
  const float scale = 1.0f / (1.0f - d.p);
  const PhiloxKey key = {static_cast<uint32_t>(d.seed), static_cast<uint32_t>(d.seed >> 32)};
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > internal::kParallelThreshold)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end;) {
      const uint64_t g = static_cast<uint64_t>(d.first_index + i);
      const uint64_t block = g >> 2;
      const Philox4x32 r = Philox4x32_10(
          {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), d.step, d.stream}, key);
      for (uint64_t lane = g & 3; lane < 4 && i < end; ++lane, ++i) {
        const float m = (r[lane] >> 8) >= threshold ? scale : 0.0f;
        const int64_t xi = contiguous ? i : OffsetOf(x.shape(), x.strides(), i);
        const int64_t oi = contiguous ? i : OffsetOf(out.shape(), out.strides(), i);
        Store(dst, oi, Load(src, xi) * m);
      }
    }
  }
}

template <typename T>
void CopyElements(const Tensor& x, const Tensor& out) {
  const int64_t n = out.numel();
  const T* src = static_cast<const T*>(x.raw_data());
  T* dst = static_cast<T*>(out.raw_data());
  if (src == dst && x.strides() == out.strides()) return;
  const bool contiguous = x.is_contiguous() && out.is_contiguous();
#pragma omp parallel for schedule(static) if (n > internal::kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    dst[contiguous ? i : OffsetOf(out.shape(), out.strides(), i)] =
        src[contiguous ? i : OffsetOf(x.shape(), x.strides(), i)];
  }
}

absl::Status Run(absl::string_view op, const char* in_name, const char* out_name, const Tensor& x,
                 const DropoutParams& d, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType(op, {{in_name, &x}, {out_name, &out}}));
  STRATA_RETURN_IF_ERROR(internal::CheckDropoutParams(op, d));
  const bool f32 = x.dtype() == DType::kF32;
  if (d.p == 0.0f) {  // nothing is dropped and nothing scaled: no draws
    f32 ? CopyElements<float>(x, out) : CopyElements<uint16_t>(x, out);
  } else {
    f32 ? Apply<float>(x, d, out) : Apply<uint16_t>(x, d, out);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DropoutForward(const Tensor& x, const DropoutParams& params, const Tensor& out) {
  return Run("DropoutForward", "x", "out", x, params, out);
}

absl::Status DropoutBackward(const Tensor& dout, const DropoutParams& params, const Tensor& dx) {
  return Run("DropoutBackward", "dout", "dx", dout, params, dx);
}

}  // namespace strata::cpu
