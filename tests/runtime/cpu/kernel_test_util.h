// Shared helpers for kernel tests: random inputs, strided copies, double-precision comparison,
// central finite differences, PyTorch fixtures and status checks.
//
//   std::mt19937_64 rng(7);
//   Tensor x = RandomTensor(Shape{3, 5}, rng);
//   Tensor xs = MakeStrided(x);                          // same values, non-contiguous
//   std::vector<double> ref = MyReference(ToDouble(x));  // double-precision reference
//   ExpectClose(out, ref, 1e-5, 1e-6, "gelu forward");
//   std::vector<double> g = NumericalGradient(MyReference, ToDouble(x), ToDouble(dout));
//   ExpectStatus(status, absl::StatusCode::kInvalidArgument, "gelu");
//   SafetensorsFile f = LoadFixture("activation");       // tests/fixtures/runtime/activation.safetensors
#pragma once

#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"

namespace strata::testing {

using Vec = std::vector<double>;
// A function of a flat double vector (the input in row-major order) to a flat double vector.
using RefFn = std::function<Vec(const Vec&)>;

// Contiguous f32 tensor with elements uniform in [lo, hi).
Tensor RandomTensor(const Shape& shape, std::mt19937_64& rng, float lo = -1.0f, float hi = 1.0f);
// Contiguous f32 zeros / uninitialised (filled with NaN so unwritten outputs are caught).
Tensor ZerosF32(const Shape& shape);
Tensor EmptyF32(const Shape& shape);
// A contiguous f32 (or i64, etc.) tensor holding `values` in row-major order.
Tensor FromDouble(const Vec& values, const Shape& shape, DType dtype = DType::kF32);
// A non-contiguous tensor with the same values as `t`: its rows sit in a wider, padded buffer.
// For rank >= 2 it also works as an input that needs a copy for Reshape.
Tensor MakeStrided(const Tensor& t);
// The elements in logical row-major order, whatever the strides and dtype.
Vec ToDouble(const Tensor& t);

// Max over elements of |a - e| / (atol + rtol * |e|) must be <= 1; reports the worst element.
void ExpectClose(const Tensor& actual, const Vec& expected, double rtol, double atol,
                 absl::string_view what);
void ExpectClose(const Vec& actual, const Vec& expected, double rtol, double atol,
                 absl::string_view what);

// Gradient of L(x) = sum_i f(x)_i * dout_i by central differences in double precision.
Vec NumericalGradient(const RefFn& f, const Vec& x, const Vec& dout, double eps = 1e-6);

// Loads tests/fixtures/<component>/<group>.safetensors (written by tests/fixtures/make_fixtures.py)
// from the source tree named by $STRATA_SOURCE_DIR (set by ctest). Fails the test if absent.
SafetensorsFile LoadFixture(absl::string_view group, absl::string_view component = "runtime");

// Expects `status` to have `code` and to contain every one of `substrings`.
void ExpectStatus(const absl::Status& status, absl::StatusCode code,
                  std::initializer_list<absl::string_view> substrings);

}  // namespace strata::testing
