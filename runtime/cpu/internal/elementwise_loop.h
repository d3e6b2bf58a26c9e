// Loops shared by the elementwise kernels: f32 or bf16 elements, contiguous or strided, parallel.
//
//   STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Add", {{"a", a}, {"b", b}, {"out", out}}));
//   MapElements<2>({&a, &b}, out, [](float x, float y) { return x + y; });
//
// Values are loaded as float and stored back in the tensor's dtype, so bf16 tensors get fp32
// arithmetic. The contiguous f32 path is a plain loop the compiler vectorizes.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/cpu/internal/elementwise_checks.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace strata::cpu::internal {

inline constexpr int64_t kParallelThreshold = 1 << 14;

// All tensors defined, host-addressable, of one shape and one dtype (f32 or bf16).
inline absl::Status CheckSameShapeAndDType(
    absl::string_view op, std::initializer_list<std::pair<absl::string_view, const Tensor*>> args) {
  return CheckSameShapeAndDType(CheckOnHost, op, args);
}

template <typename T>
inline float Load(const T* p, int64_t i) {
  if constexpr (std::is_same_v<T, float>) return p[i];
  else return Bf16ToFloat(p[i]);
}
template <typename T>
inline void Store(T* p, int64_t i, float v) {
  if constexpr (std::is_same_v<T, float>) p[i] = v;
  else p[i] = FloatToBf16(v);
}

// Element offset of flat index `flat` in a tensor of `shape` with `strides`.
inline int64_t OffsetOf(const Shape& shape, absl::Span<const int64_t> strides, int64_t flat) {
  int64_t off = 0;
  for (int d = shape.rank() - 1; d >= 0; --d) {
    off += (flat % shape[d]) * strides[d];
    flat /= shape[d];
  }
  return off;
}

// Calls f with the N values as separate arguments, so that nothing escapes to memory and the
// loops vectorize.
template <size_t N, typename F>
inline float Call(F& f, const float (&v)[N]) {
  if constexpr (N == 1) return f(v[0]);
  else if constexpr (N == 2) return f(v[0], v[1]);
  else return f(v[0], v[1], v[2]);
}

// out[i] = f(values of the inputs at i) for every element; f takes N floats.
template <typename T, size_t N, typename F>
void MapTyped(const std::array<const Tensor*, N>& in, const Tensor& out, F f) {
  const int64_t n = out.numel();
  std::array<const T*, N> src;
  for (size_t k = 0; k < N; ++k) src[k] = static_cast<const T*>(in[k]->raw_data());
  T* dst = static_cast<T*>(out.raw_data());
  bool contiguous = out.is_contiguous();
  for (size_t k = 0; k < N; ++k) contiguous = contiguous && in[k]->is_contiguous();
  if constexpr (N <= 2) {
    if (contiguous && std::is_same_v<T, float>) {
      // The common case as plain pointer loops, which the compiler vectorizes fully.
      const float* a = reinterpret_cast<const float*>(src[0]);
      const float* b = reinterpret_cast<const float*>(src[N - 1]);
      float* d = reinterpret_cast<float*>(dst);
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) {
        if constexpr (N == 1) d[i] = f(a[i]);
        else d[i] = f(a[i], b[i]);
      }
      return;
    }
  }
  if (contiguous) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) {
      float v[N];
      for (size_t k = 0; k < N; ++k) v[k] = Load(src[k], i);
      Store(dst, i, Call<N>(f, v));
    }
    return;
  }
  const Shape& shape = out.shape();
  const int64_t inner = shape.rank() ? shape.dim(-1) : 1;
  const int64_t rows = inner ? n / inner : 0;
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    std::array<int64_t, N> base, step;
    for (size_t k = 0; k < N; ++k) {
      base[k] = OffsetOf(shape, in[k]->strides(), r * inner);
      step[k] = shape.rank() ? in[k]->stride(-1) : 1;
    }
    const int64_t out_base = OffsetOf(shape, out.strides(), r * inner);
    const int64_t out_step = shape.rank() ? out.stride(-1) : 1;
    for (int64_t i = 0; i < inner; ++i) {
      float v[N];
      for (size_t k = 0; k < N; ++k) v[k] = Load(src[k], base[k] + i * step[k]);
      Store(dst, out_base + i * out_step, Call<N>(f, v));
    }
  }
}

template <size_t N, typename F>
void MapElements(const std::array<const Tensor*, N>& in, const Tensor& out, F f) {
  if (out.dtype() == DType::kF32) MapTyped<float, N>(in, out, f);
  else MapTyped<uint16_t, N>(in, out, f);
}

}  // namespace strata::cpu::internal
