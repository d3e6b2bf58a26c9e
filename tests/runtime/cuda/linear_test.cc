// cuda::LinearForward and LinearBackward against the CPU kernels on the same inputs: odd sizes,
// bias and residual, a transposed weight view, each gradient left out in turn, GradMode, bf16;
// f32 within 1e-5 norm-wise, bf16 within 1e-2; and the argument checks, which run without a
// device.
#include "runtime/cuda/linear.h"

#include <memory>
#include <random>
#include <tuple>

#include "gtest/gtest.h"
#include "runtime/cpu/linear.h"
#include "runtime/cuda/blas_handle.h"
#include "tests/runtime/cpu/kernel_test_util.h"
#include "tests/runtime/cuda/blas_test_util.h"
#include "tests/runtime/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using testing::ExpectRelativeError;
using testing::ExpectStatus;
using testing::RandomIn;
using testing::RandomTensor;
using testing::ToF32;

class LinearCudaTest : public testing::CublasKernelTest {};

// x's leading dims, in, out. No single-element y: with a bias and a residual one element can
// cancel to near zero, and a norm-wise error over one element is then relative to almost nothing.
const std::tuple<Dims, int64_t, int64_t> kShapes[] = {
    {{5}, 1, 1}, {{1}, 9, 7}, {{2, 7}, 33, 129}, {{129}, 65, 7}, {{3, 11}, 128, 33}, {{9}, 257, 1}};

Shape WithLast(const Dims& lead, int64_t last) {
  Dims d = lead;
  d.push_back(last);
  return Shape(d);
}

TEST_F(LinearCudaTest, ForwardMatchesTheCpuKernel) {
  std::mt19937_64 rng(21);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const double tolerance = dtype == DType::kF32 ? 1e-5 : 1e-2;
    for (const auto& [lead, in, out] : kShapes) {
      for (bool w_trans : {false, true}) {
        for (auto [with_b, with_r] : {std::pair{true, false}, {false, false}, {true, true},
                                     {false, true}}) {
          SCOPED_TRACE(::testing::Message() << WithLast(lead, in).ToString() << " -> " << out
                                            << " w_trans " << w_trans << " b " << with_b << " r "
                                            << with_r << " " << DTypeName(dtype));
          const Tensor x = RandomIn(WithLast(lead, in), dtype, rng);
          // w (out, in), or the transposed view of a stored (in, out) matrix.
          const Tensor w_s = RandomIn(w_trans ? Shape{in, out} : Shape{out, in}, dtype, rng);
          const Tensor b = with_b ? RandomIn(Shape{out}, dtype, rng) : Tensor();
          const Tensor r = with_r ? RandomIn(WithLast(lead, out), dtype, rng) : Tensor();
          const Tensor dw_s = ToDevice(w_s);
          const Tensor y = DeviceEmpty(WithLast(lead, out), dtype);
          ASSERT_TRUE(LinearForward(stream(), blas(), ToDevice(x),
                                    w_trans ? dw_s.Transpose(0, 1).value() : dw_s,
                                    with_b ? ToDevice(b) : Tensor(), y,
                                    with_r ? ToDevice(r) : Tensor())
                          .ok());
          const Tensor hw_s = ToF32(w_s);
          const Tensor want = testing::EmptyF32(y.shape());
          ASSERT_TRUE(cpu::LinearForward(ToF32(x), w_trans ? hw_s.Transpose(0, 1).value() : hw_s,
                                         with_b ? ToF32(b) : Tensor(), want,
                                         with_r ? ToF32(r) : Tensor())
                          .ok());
          ExpectRelativeError(ToF32(ToHost(y)), want, tolerance, "linear forward");
        }
      }
    }
  }
}

TEST_F(LinearCudaTest, Bf16OperandsIntoF32Output) {
  std::mt19937_64 rng(22);
  const Tensor x = RandomIn(Shape{9, 70}, DType::kBF16, rng);
  const Tensor w = RandomIn(Shape{33, 70}, DType::kBF16, rng);
  const Tensor b = RandomTensor(Shape{33}, rng), r = RandomTensor(Shape{9, 33}, rng);
  const Tensor y = DeviceEmpty(Shape{9, 33});
  ASSERT_TRUE(
      LinearForward(stream(), blas(), ToDevice(x), ToDevice(w), ToDevice(b), y, ToDevice(r)).ok());
  const Tensor want = testing::EmptyF32(y.shape());
  ASSERT_TRUE(cpu::LinearForward(ToF32(x), ToF32(w), b, want, r).ok());
  ExpectRelativeError(ToHost(y), want, 1e-2, "bf16 linear into f32");
}

TEST_F(LinearCudaTest, TensorFloat32IsClose) {
  std::mt19937_64 rng(23);
  const Tensor x = RandomTensor(Shape{65, 129}, rng), w = RandomTensor(Shape{33, 129}, rng);
  const Tensor b = RandomTensor(Shape{33}, rng);
  const Tensor y = DeviceEmpty(Shape{65, 33});
  ASSERT_TRUE(LinearForward(stream(), blas(), ToDevice(x), ToDevice(w), ToDevice(b), y, Tensor(),
                            GemmPrecision::kTf32)
                  .ok());
  const Tensor want = testing::EmptyF32(y.shape());
  ASSERT_TRUE(cpu::LinearForward(x, w, b, want).ok());
  ExpectRelativeError(ToHost(y), want, 1e-2, "tf32 linear");
}

TEST_F(LinearCudaTest, BackwardMatchesTheCpuKernel) {
  std::mt19937_64 rng(24);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const double tolerance = dtype == DType::kF32 ? 1e-5 : 1e-2;
    for (const auto& [lead, in, out] : kShapes) {
      for (GradMode mode : {GradMode::kOverwrite, GradMode::kAccumulate}) {
        // All three gradients, then each one left out in turn.
        for (int skip : {-1, 0, 1, 2}) {
          const bool want_dx = skip != 0, want_dw = skip != 1, want_db = skip != 2;
          SCOPED_TRACE(::testing::Message()
                       << WithLast(lead, in).ToString() << " -> " << out << " dx " << want_dx
                       << " dw " << want_dw << " db " << want_db << " accumulate "
                       << (mode == GradMode::kAccumulate) << " " << DTypeName(dtype));
          const Tensor x = RandomIn(WithLast(lead, in), dtype, rng);
          const Tensor w = RandomIn(Shape{out, in}, dtype, rng);
          const Tensor dy = RandomIn(WithLast(lead, out), dtype, rng);
          // Accumulation starts from these (rounded to dw's type); overwriting ignores them.
          const Tensor dw0 = RandomIn(w.shape(), dtype, rng);
          const Tensor db0 = RandomTensor(Shape{out}, rng);
          const bool acc = mode == GradMode::kAccumulate;
          const Tensor dx = want_dx ? DeviceEmpty(x.shape(), dtype) : Tensor();
          const Tensor dw = !want_dw ? Tensor() : acc ? ToDevice(dw0) : DeviceEmpty(w.shape(), dtype);
          const Tensor db = !want_db ? Tensor() : acc ? ToDevice(db0) : DeviceEmpty(Shape{out});
          // Without dw, x is not needed: leave it out.
          ASSERT_TRUE(LinearBackward(stream(), blas(), want_dw ? ToDevice(x) : Tensor(),
                                     ToDevice(w), ToDevice(dy), dx, dw, db, mode)
                          .ok());
          const Tensor hdx = want_dx ? testing::EmptyF32(x.shape()) : Tensor();
          const Tensor hdw = !want_dw ? Tensor() : acc ? ToF32(dw0) : testing::EmptyF32(w.shape());
          const Tensor hdb = !want_db ? Tensor() : acc ? ToF32(db0) : testing::EmptyF32(Shape{out});
          ASSERT_TRUE(cpu::LinearBackward(want_dw ? ToF32(x) : Tensor(), ToF32(w), ToF32(dy), hdx,
                                          hdw, hdb, mode)
                          .ok());
          if (want_dx) ExpectRelativeError(ToF32(ToHost(dx)), hdx, tolerance, "dx");
          if (want_dw) ExpectRelativeError(ToF32(ToHost(dw)), hdw, tolerance, "dw");
          // db is summed in f32 from dy's values either way.
          if (want_db) ExpectRelativeError(ToHost(db), hdb, 1e-5, "db");
        }
      }
    }
  }
}

TEST_F(LinearCudaTest, BackwardIntoXItselfAndManyRows) {
  std::mt19937_64 rng(25);
  // 4099 rows: the bias gradient's column sums run over many rows per thread.
  const Tensor x = RandomTensor(Shape{4099, 40}, rng), w = RandomTensor(Shape{40, 40}, rng);
  const Tensor dy = RandomTensor(Shape{4099, 40}, rng);
  const Tensor dx_is_x = ToDevice(x);
  const Tensor dw = DeviceEmpty(w.shape()), db = DeviceEmpty(Shape{40});
  ASSERT_TRUE(LinearBackward(stream(), blas(), dx_is_x, ToDevice(w), ToDevice(dy), dx_is_x, dw, db)
                  .ok());
  const Tensor hdx = testing::EmptyF32(x.shape()), hdw = testing::EmptyF32(w.shape());
  const Tensor hdb = testing::EmptyF32(Shape{40});
  ASSERT_TRUE(cpu::LinearBackward(x, w, dy, hdx, hdw, hdb).ok());
  ExpectRelativeError(ToHost(dx_is_x), hdx, 1e-5, "dx in x");
  ExpectRelativeError(ToHost(dw), hdw, 1e-5, "dw");
  ExpectRelativeError(ToHost(db), hdb, 1e-5, "db");
}

class LinearCudaChecks : public ::testing::Test {
 protected:
  testing::CudaTaggedViews on_cuda;
};

TEST_F(LinearCudaChecks, ForwardRefusals) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  const Tensor x = on_cuda(Shape{2, 3, 8}), w = on_cuda(Shape{5, 8}), b = on_cuda(Shape{5});
  const Tensor y = on_cuda(Shape{2, 3, 5});
  ExpectStatus(LinearForward(nullptr, nullptr, x, testing::EmptyF32(Shape{5, 8}), b, y), kInvalid,
               {"LinearForward", "w", "not on a CUDA device"});
  ExpectStatus(LinearForward(nullptr, nullptr, testing::EmptyF32(Shape{2, 3, 8}), w, b, y),
               kInvalid, {"LinearForward", "x", "not on a CUDA device"});
  ExpectStatus(LinearForward(nullptr, nullptr, on_cuda(Shape{2, 3, 7}), w, b, y), kInvalid,
               {"LinearForward", "x", "last dimension of 8"});
  ExpectStatus(LinearForward(nullptr, nullptr, on_cuda(Shape{2, 3, 8}, DType::kBF16), w, b, y),
               kInvalid, {"LinearForward", "x"});
  ExpectStatus(LinearForward(nullptr, nullptr, x, on_cuda(Shape{5, 8}, DType::kI32), b, y),
               kInvalid, {"LinearForward", "w", "expected f32, bf16 or f16"});
  ExpectStatus(LinearForward(nullptr, nullptr, x, w, on_cuda(Shape{4}), y), kInvalid,
               {"LinearForward", "b"});
  ExpectStatus(LinearForward(nullptr, nullptr, x, w, b, on_cuda(Shape{3, 3, 5})), kInvalid,
               {"LinearForward", "differ in leading dimensions"});
  ExpectStatus(LinearForward(nullptr, nullptr, x, w, b, y, y), kInvalid,
               {"LinearForward", "residual is y itself"});
  ExpectStatus(LinearForward(nullptr, nullptr, x, w, b, y, on_cuda(Shape{2, 3, 5}, DType::kBF16)),
               kInvalid, {"LinearForward", "residual"});
  const Tensor no_unit =
      on_cuda(Shape{10, 16}).Slice(0, 0, 10, 2).value().Slice(1, 0, 16, 2).value();
  ExpectStatus(LinearForward(nullptr, nullptr, x, no_unit, b, y), kInvalid,
               {"LinearForward", "w", "no unit stride"});
  // Well-formed, but no handle to run it with.
  ExpectStatus(LinearForward(nullptr, nullptr, x, w, Tensor(), y), kInvalid,
               {"no cuBLAS handle"});
}

TEST_F(LinearCudaChecks, BackwardChecksEveryOutputFirst) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  const Tensor x = on_cuda(Shape{6, 8}), w = on_cuda(Shape{5, 8}), dy = on_cuda(Shape{6, 5});
  const Tensor dx = on_cuda(Shape{6, 8}), dw = on_cuda(Shape{5, 8}), db = on_cuda(Shape{5});
  ExpectStatus(LinearBackward(nullptr, nullptr, Tensor(), w, dy, dx, dw, db), kInvalid,
               {"LinearBackward", "dw needs x"});
  ExpectStatus(LinearBackward(nullptr, nullptr, x, w, on_cuda(Shape{6, 4}), dx, dw, db), kInvalid,
               {"LinearBackward", "dy"});
  ExpectStatus(LinearBackward(nullptr, nullptr, x, w, dy, on_cuda(Shape{6, 7}), dw, db), kInvalid,
               {"LinearBackward", "dx"});
  ExpectStatus(LinearBackward(nullptr, nullptr, x, w, dy, dx, on_cuda(Shape{8, 5}), db), kInvalid,
               {"LinearBackward", "dw"});
  ExpectStatus(LinearBackward(nullptr, nullptr, x, w, dy, dx, dw, on_cuda(Shape{5}, DType::kBF16)),
               kInvalid, {"LinearBackward", "db"});
  ExpectStatus(LinearBackward(nullptr, nullptr, x, w, dy, dx, dw, testing::EmptyF32(Shape{5})),
               kInvalid, {"LinearBackward", "db", "not on a CUDA device"});
  ExpectStatus(
      LinearBackward(nullptr, nullptr, x, w, dy, dx, on_cuda(Shape{5, 8}, DType::kF16), db),
      kInvalid, {"LinearBackward", "dw"});
  ExpectStatus(LinearBackward(nullptr, nullptr, on_cuda(Shape{7, 8}), w, dy, dx, dw, db), kInvalid,
               {"LinearBackward", "differ in leading dimensions"});
}

}  // namespace
}  // namespace strata::cuda
