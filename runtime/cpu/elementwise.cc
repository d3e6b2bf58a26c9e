#include "runtime/cpu/elementwise.h"

#include <algorithm>
#include <cmath>

#include "runtime/cpu/internal/column_sums.h"
#include "runtime/cpu/internal/elementwise_loop.h"

namespace strata::cpu {

using internal::CheckBias;
using internal::CheckSameShapeAndDType;
using internal::MapElements;

absl::Status Add(const Tensor& a, const Tensor& b, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Add", {{"a", &a}, {"b", &b}, {"out", &out}}));
  MapElements<2>({&a, &b}, out, [](float x, float y) { return x + y; });
  return absl::OkStatus();
}

absl::Status AddScaled(const Tensor& a, const Tensor& b, float alpha, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("AddScaled", {{"a", &a}, {"b", &b}, {"out", &out}}));
  MapElements<2>({&a, &b}, out, [alpha](float x, float y) { return x + alpha * y; });
  return absl::OkStatus();
}

absl::Status Mul(const Tensor& a, const Tensor& b, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Mul", {{"a", &a}, {"b", &b}, {"out", &out}}));
  MapElements<2>({&a, &b}, out, [](float x, float y) { return x * y; });
  return absl::OkStatus();
}

absl::Status MulBackward(const Tensor& a, const Tensor& b, const Tensor& dout, const Tensor& da,
                         const Tensor& db) {
  STRATA_RETURN_IF_ERROR(
      CheckSameShapeAndDType("MulBackward", {{"a", &a}, {"b", &b}, {"dout", &dout}}));
  if (da.defined()) STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("MulBackward", {{"a", &a}, {"da", &da}}));
  if (db.defined()) STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("MulBackward", {{"b", &b}, {"db", &db}}));
  // db first: da may alias a, which db needs.
  if (db.defined()) MapElements<2>({&dout, &a}, db, [](float x, float y) { return x * y; });
  if (da.defined()) MapElements<2>({&dout, &b}, da, [](float x, float y) { return x * y; });
  return absl::OkStatus();
}

absl::Status Scale(const Tensor& x, float alpha, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Scale", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [alpha](float x) { return alpha * x; });
  return absl::OkStatus();
}

absl::Status Sub(const Tensor& a, const Tensor& b, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Sub", {{"a", &a}, {"b", &b}, {"out", &out}}));
  MapElements<2>({&a, &b}, out, [](float x, float y) { return x - y; });
  return absl::OkStatus();
}

absl::Status Div(const Tensor& a, const Tensor& b, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Div", {{"a", &a}, {"b", &b}, {"out", &out}}));
  MapElements<2>({&a, &b}, out, [](float x, float y) { return x / y; });
  return absl::OkStatus();
}

absl::Status ScaleShift(const Tensor& x, float alpha, float beta, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("ScaleShift", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [alpha, beta](float x) { return alpha * x + beta; });
  return absl::OkStatus();
}

absl::Status Pow(const Tensor& x, float exponent, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Pow", {{"x", &x}, {"out", &out}}));
  if (exponent == 2.0f) {  // the common case, exact and fast
    MapElements<1>({&x}, out, [](float x) { return x * x; });
  } else {
    MapElements<1>({&x}, out, [exponent](float x) { return std::pow(x, exponent); });
  }
  return absl::OkStatus();
}

absl::Status Exp(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Exp", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return std::exp(x); });
  return absl::OkStatus();
}

absl::Status Log(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Log", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return std::log(x); });
  return absl::OkStatus();
}

absl::Status Sqrt(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Sqrt", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return std::sqrt(x); });
  return absl::OkStatus();
}

absl::Status Rsqrt(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("Rsqrt", {{"x", &x}, {"out", &out}}));
  MapElements<1>({&x}, out, [](float x) { return 1.0f / std::sqrt(x); });
  return absl::OkStatus();
}

namespace {

template <typename T>
void BroadcastRowsTyped(const Tensor& x, const Tensor& out) {
  const int64_t c = x.numel(), rows = c ? out.numel() / c : 0;
  const T* xp = static_cast<const T*>(x.raw_data());
  T* op = static_cast<T*>(out.raw_data());
#pragma omp parallel for schedule(static) if (out.numel() > internal::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) std::copy(xp, xp + c, op + r * c);
}

template <typename T>
void AddBiasTyped(const Tensor& x, const Tensor& bias, const Tensor& out) {
  const int64_t c = bias.numel(), rows = c ? x.numel() / c : 0;
  const T* xp = static_cast<const T*>(x.raw_data());
  const T* bp = static_cast<const T*>(bias.raw_data());
  T* op = static_cast<T*>(out.raw_data());
#pragma omp parallel for schedule(static) if (x.numel() > internal::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) {
      internal::Store(op, r * c + i, internal::Load(xp, r * c + i) + internal::Load(bp, i));
    }
  }
}

template <typename T>
void BiasGradTyped(const Tensor& dout, const Tensor& dbias, bool accumulate) {
  const int64_t c = dbias.numel(), rows = c ? dout.numel() / c : 0;
  internal::ColumnSums(static_cast<const T*>(dout.raw_data()), rows, c,
                       static_cast<T*>(dbias.raw_data()), accumulate);
}

}  // namespace

absl::Status AddBias(const Tensor& x, const Tensor& bias, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("AddBias", {{"x", &x}, {"out", &out}}));
  STRATA_RETURN_IF_ERROR(CheckContiguous("AddBias", "out", out));
  STRATA_RETURN_IF_ERROR(CheckBias("AddBias", "x", x, "bias", bias));
  if (x.dtype() == DType::kF32) AddBiasTyped<float>(x, bias, out);
  else AddBiasTyped<uint16_t>(x, bias, out);
  return absl::OkStatus();
}

absl::Status BroadcastRows(const Tensor& x, const Tensor& out) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("BroadcastRows", {{"out", &out}}));
  STRATA_RETURN_IF_ERROR(CheckContiguous("BroadcastRows", "out", out));
  STRATA_RETURN_IF_ERROR(CheckBias("BroadcastRows", "out", out, "x", x));
  if (x.dtype() == DType::kF32) BroadcastRowsTyped<float>(x, out);
  else BroadcastRowsTyped<uint16_t>(x, out);
  return absl::OkStatus();
}

absl::Status BiasGrad(const Tensor& dout, const Tensor& dbias, GradMode mode) {
  STRATA_RETURN_IF_ERROR(CheckSameShapeAndDType("BiasGrad", {{"dout", &dout}}));
  STRATA_RETURN_IF_ERROR(CheckBias("BiasGrad", "dout", dout, "dbias", dbias));
  const bool accumulate = mode == GradMode::kAccumulate;
  if (dout.dtype() == DType::kF32) BiasGradTyped<float>(dout, dbias, accumulate);
  else BiasGradTyped<uint16_t>(dout, dbias, accumulate);
  return absl::OkStatus();
}

}  // namespace strata::cpu
