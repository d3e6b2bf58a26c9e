#include "tests/runtime/cpu/kernel_test_util.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace strata::testing {

Tensor RandomTensor(const Shape& shape, std::mt19937_64& rng, float lo, float hi) {
  Tensor t = Tensor::Empty(shape, DType::kF32, DefaultCpuAllocator()).value();
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

Tensor ZerosF32(const Shape& shape) {
  return Tensor::Zeros(shape, DType::kF32, DefaultCpuAllocator()).value();
}

Tensor EmptyF32(const Shape& shape) {
  Tensor t = Tensor::Empty(shape, DType::kF32, DefaultCpuAllocator()).value();
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = std::numeric_limits<float>::quiet_NaN();
  return t;
}

Tensor FromDouble(const Vec& values, const Shape& shape, DType dtype) {
  STRATA_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), values.size(),
               " values for shape ", shape.ToString());
  Tensor t = Tensor::Empty(shape, dtype, DefaultCpuAllocator()).value();
  if (dtype == DType::kI64) {
    // Through int64 directly: ids must not round through float.
    int64_t* p = t.data<int64_t>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<int64_t>(values[i]);
    return t;
  }
  std::vector<float> f(values.begin(), values.end());
  ConvertElements(f.data(), DType::kF32, t.raw_data(), dtype, f.size());
  return t;
}

Tensor MakeStrided(const Tensor& t) {
  // Each innermost row is stored with a gap of 3 elements after it, and the whole view starts
  // at offset 1, so the result is neither contiguous nor aligned like the source.
  const int rank = t.rank();
  if (rank == 0) return t.Contiguous(DefaultCpuAllocator()).value();
  Dims padded(t.shape().dims().begin(), t.shape().dims().end());
  padded[rank - 1] += 3;
  Dims buffer_dims = padded;
  buffer_dims[0] += 1;  // room for the offset
  Tensor buffer = Tensor::Zeros(Shape(buffer_dims), t.dtype(), DefaultCpuAllocator()).value();
  Tensor flat = buffer.Reshape({-1}).value();
  const int64_t total = Shape(padded).numel();
  Tensor region = flat.Slice(0, 1, 1 + total).value().Reshape(padded).value();
  Tensor view = region.Slice(rank - 1, 0, t.dim(rank - 1)).value();
  STRATA_CHECK(view.CopyFrom(t).ok(), "MakeStrided copy");
  return view;
}

Vec ToDouble(const Tensor& t) {
  Tensor c = Tensor::Empty(t.shape(), DType::kF32, DefaultCpuAllocator()).value();
  Vec out(t.numel());
  if (t.dtype() == DType::kI64 || t.dtype() == DType::kI32) {
    Tensor i = Tensor::Empty(t.shape(), DType::kI64, DefaultCpuAllocator()).value();
    STRATA_CHECK(i.CopyFrom(t).ok(), "ToDouble copy");
    for (int64_t k = 0; k < t.numel(); ++k) out[k] = static_cast<double>(i.data<int64_t>()[k]);
    return out;
  }
  STRATA_CHECK(c.CopyFrom(t).ok(), "ToDouble copy");
  for (int64_t k = 0; k < t.numel(); ++k) out[k] = c.data<float>()[k];
  return out;
}

void ExpectClose(const Vec& actual, const Vec& expected, double rtol, double atol,
                 absl::string_view what) {
  ASSERT_EQ(actual.size(), expected.size()) << what << ": element counts differ";
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double err = std::abs(actual[i] - expected[i]) / (atol + rtol * std::abs(expected[i]));
    if (!(err <= worst)) {  // also catches NaN
      worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
      worst_i = i;
      if (std::isnan(err)) break;
    }
  }
  EXPECT_LE(worst, 1.0) << what << ": element " << worst_i << " is " << actual[worst_i]
                        << ", expected " << expected[worst_i] << " (rtol " << rtol << ", atol "
                        << atol << ", " << actual.size() << " elements)";
}

void ExpectClose(const Tensor& actual, const Vec& expected, double rtol, double atol,
                 absl::string_view what) {
  ExpectClose(ToDouble(actual), expected, rtol, atol, what);
}

Vec NumericalGradient(const RefFn& f, const Vec& x, const Vec& dout, double eps) {
  Vec xp = x, grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double h = eps * std::max(1.0, std::abs(x[i]));
    xp[i] = x[i] + h;
    const Vec plus = f(xp);
    xp[i] = x[i] - h;
    const Vec minus = f(xp);
    xp[i] = x[i];
    STRATA_CHECK(plus.size() == dout.size(), "reference output has ", plus.size(),
                 " elements, dout has ", dout.size());
    double g = 0;
    for (size_t k = 0; k < dout.size(); ++k) g += (plus[k] - minus[k]) * dout[k];
    grad[i] = g / (2 * h);
  }
  return grad;
}

SafetensorsFile LoadFixture(absl::string_view group, absl::string_view component) {
  const char* root = std::getenv("STRATA_SOURCE_DIR");
  const std::string dir = root ? root : ".";
  const std::string path = absl::StrCat(dir, "/tests/fixtures/", component, "/", group, ".safetensors");
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Read(path, DefaultCpuAllocator());
  STRATA_CHECK(file.ok(), "fixture ", path, ": ", file.status().ToString(),
               " (regenerate with tests/fixtures/make_fixtures.py)");
  return *std::move(file);
}

void ExpectStatus(const absl::Status& status, absl::StatusCode code,
                  std::initializer_list<absl::string_view> substrings) {
  EXPECT_EQ(status.code(), code) << status;
  for (absl::string_view s : substrings) {
    EXPECT_NE(status.message().find(s), absl::string_view::npos)
        << "status '" << status.message() << "' does not mention '" << s << "'";
  }
}

}  // namespace strata::testing
