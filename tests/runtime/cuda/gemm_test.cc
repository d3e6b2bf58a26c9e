// cuda::Matmul, MatmulAdd, BatchedMatmul and MatmulBackward against the CPU kernels on the same
// inputs: odd sizes, every transpose, transposed and padded views, alpha and beta, k = 0, batch
// broadcasting; f32 within 1e-5 norm-wise, tf32, bf16 and f16 within 1e-2; and the argument checks,
// which run without a device.
#include "runtime/cuda/gemm.h"

#include <cublas_v2.h>

#include <memory>
#include <random>
#include <tuple>

#include "gtest/gtest.h"
#include "runtime/cpu/gemm.h"
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

// A (rows, cols) matrix held by `storage`, stored as itself or transposed, its stored rows `pad`
// elements longer than needed: the storage's shape, and the view of it.
Shape StorageShape(int64_t rows, int64_t cols, bool stored_trans, int64_t pad) {
  return stored_trans ? Shape{cols, rows + pad} : Shape{rows, cols + pad};
}
Tensor MatrixView(const Tensor& storage, int64_t rows, int64_t cols, bool stored_trans) {
  Tensor v = storage.Slice(1, 0, stored_trans ? rows : cols).value();
  return stored_trans ? v.Transpose(0, 1).value() : v;
}

// How the operands of one product are laid out.
struct Layout {
  bool a_stored_trans = false, b_stored_trans = false, out_stored_trans = false;
  int64_t pad = 0;  // extra elements per stored row of a, b and out
};

class GemmCudaTest : public testing::CublasKernelTest {
 protected:
  // out = alpha op(a) op(b) + beta out on the device and on the CPU (on the same values, rounded
  // to `ab` and `out_dtype`), compared norm-wise.
  void CompareMatmul(int64_t m, int64_t n, int64_t k, bool ta, bool tb, const Layout& l,
                     float alpha, float beta, DType ab, DType out_dtype, GemmPrecision precision,
                     double tolerance, std::mt19937_64& rng) {
    SCOPED_TRACE(::testing::Message()
                 << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb << " stored_trans "
                 << l.a_stored_trans << l.b_stored_trans << l.out_stored_trans << " pad " << l.pad
                 << " alpha " << alpha << " beta " << beta << " " << DTypeName(ab) << " -> "
                 << DTypeName(out_dtype) << " tf32 " << (precision == GemmPrecision::kTf32));
    const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    const Tensor a_s = RandomIn(StorageShape(ar, ac, l.a_stored_trans, l.pad), ab, rng);
    const Tensor b_s = RandomIn(StorageShape(br, bc, l.b_stored_trans, l.pad), ab, rng);
    const Tensor c_s = RandomIn(StorageShape(m, n, l.out_stored_trans, l.pad), out_dtype, rng);
    const Tensor da_s = ToDevice(a_s), db_s = ToDevice(b_s);
    const Tensor dc_s = beta == 0.0f ? DeviceEmpty(c_s.shape(), out_dtype) : ToDevice(c_s);
    ASSERT_TRUE(Matmul(stream(), blas(), MatrixView(da_s, ar, ac, l.a_stored_trans),
                       MatrixView(db_s, br, bc, l.b_stored_trans),
                       MatrixView(dc_s, m, n, l.out_stored_trans), ta, tb, alpha, beta, precision)
                    .ok());
    const Tensor want_s = ToF32(c_s);
    const Tensor want = MatrixView(want_s, m, n, l.out_stored_trans);
    ASSERT_TRUE(cpu::Matmul(MatrixView(ToF32(a_s), ar, ac, l.a_stored_trans),
                            MatrixView(ToF32(b_s), br, bc, l.b_stored_trans), want, ta, tb, alpha,
                            beta)
                    .ok());
    const Tensor got = MatrixView(ToHost(dc_s), m, n, l.out_stored_trans);
    ExpectRelativeError(ToF32(got), ToF32(want), tolerance, "matmul");
  }

};

constexpr std::tuple<int64_t, int64_t, int64_t> kShapes[] = {
    {1, 9, 1}, {9, 1, 1}, {7, 33, 129}, {129, 7, 33}, {33, 129, 7}, {1, 65, 200}, {64, 1, 3},
    {130, 70, 257}};
// (No single-element products: with beta != 0 one element can cancel to near zero, and a
// norm-wise error over one element is then relative to almost nothing.)

TEST_F(GemmCudaTest, MatmulF32MatchesTheCpuKernel) {
  std::mt19937_64 rng(11);
  const Layout layouts[] = {{}, {true, true, false, 3}, {false, false, true, 2}};
  for (auto [m, n, k] : kShapes) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (const Layout& l : layouts) {
          for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 2.0f}, {1.0f, 1.0f}}) {
            CompareMatmul(m, n, k, ta, tb, l, alpha, beta, DType::kF32, DType::kF32,
                          GemmPrecision::kF32, 1e-5, rng);
          }
        }
      }
    }
  }
}

TEST_F(GemmCudaTest, MatmulTf32IsClose) {
  std::mt19937_64 rng(12);
  for (auto [m, n, k] : kShapes) {
    for (bool ta : {false, true}) {
      CompareMatmul(m, n, k, ta, !ta, {}, 1.0f, 0.0f, DType::kF32, DType::kF32,
                    GemmPrecision::kTf32, 1e-2, rng);
      CompareMatmul(m, n, k, ta, ta, {true, false, true, 1}, 0.5f, 2.0f, DType::kF32, DType::kF32,
                    GemmPrecision::kTf32, 1e-2, rng);
    }
  }
}

// kBf16 on f32 operands that hold bf16 values (a mixed-precision step's) is fp32 arithmetic's
// result; on other f32 values it rounds them, which shows.
TEST_F(GemmCudaTest, MatmulBf16PrecisionIsExactOnBf16Values) {
  std::mt19937_64 rng(15);
  for (auto [m, n, k] : kShapes) {
    for (bool ta : {false, true}) {
      const int64_t ar = ta ? k : m, ac = ta ? m : k;
      const Tensor a = ToF32(RandomIn(Shape{ar, ac}, DType::kBF16, rng));
      const Tensor b = ToF32(RandomIn(Shape{n, k}, DType::kBF16, rng));
      const Tensor out = DeviceEmpty(Shape{m, n}, DType::kF32);
      ASSERT_TRUE(Matmul(stream(), blas(), ToDevice(a), ToDevice(b), out, ta, true, 1.0f, 0.0f,
                         GemmPrecision::kBf16)
                      .ok());
      Tensor want = Tensor::Empty(Shape{m, n}, DType::kF32, DefaultCpuAllocator()).value();
      ASSERT_TRUE(cpu::Matmul(a, b, want, ta, true).ok());
      ExpectRelativeError(ToHost(out), want, 1e-6, "bf16 values");
    }
  }
  const Tensor a = RandomIn(Shape{33, 129}, DType::kF32, rng);
  const Tensor b = RandomIn(Shape{129, 7}, DType::kF32, rng);
  const Tensor out = DeviceEmpty(Shape{33, 7}, DType::kF32);
  ASSERT_TRUE(Matmul(stream(), blas(), ToDevice(a), ToDevice(b), out, false, false, 1.0f, 0.0f,
                     GemmPrecision::kBf16)
                  .ok());
  Tensor want = Tensor::Empty(Shape{33, 7}, DType::kF32, DefaultCpuAllocator()).value();
  ASSERT_TRUE(cpu::Matmul(a, b, want).ok());
  ExpectRelativeError(ToHost(out), want, 2e-2, "f32 values rounded to bf16");
  double diff = 0;
  const Tensor got = ToHost(out);
  for (int64_t i = 0; i < want.numel(); ++i) {
    diff =
        std::max(diff, std::abs(static_cast<double>(got.data<float>()[i]) - want.data<float>()[i]));
  }
  EXPECT_GT(diff, 1e-4) << "the operands were not rounded to bf16";
}

TEST_F(GemmCudaTest, MatmulBf16AndF16OperandsAreClose) {
  std::mt19937_64 rng(13);
  for (DType ab : {DType::kBF16, DType::kF16}) {
    for (DType out : {DType::kF32, ab}) {
      for (auto [m, n, k] : kShapes) {
        for (bool ta : {false, true}) {
          for (bool tb : {false, true}) {
            CompareMatmul(m, n, k, ta, tb, {}, 1.0f, 0.0f, ab, out, GemmPrecision::kF32, 1e-2,
                          rng);
          }
        }
        CompareMatmul(m, n, k, false, true, {true, false, true, 3}, 0.5f, 1.0f, ab, out,
                      GemmPrecision::kF32, 1e-2, rng);
      }
    }
  }
}

TEST_F(GemmCudaTest, EmptyInnerDimensionScalesOut) {
  std::mt19937_64 rng(14);
  for (DType out : {DType::kF32, DType::kBF16}) {
    const DType ab = out;
    for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {1.0f, 2.0f}}) {
      CompareMatmul(5, 6, 0, false, false, {}, alpha, beta, ab, out, GemmPrecision::kF32, 1e-6,
                    rng);
      CompareMatmul(5, 6, 0, true, true, {false, false, true, 2}, alpha, beta, ab, out,
                    GemmPrecision::kF32, 1e-6, rng);
    }
  }
  // m = 0: nothing to do, nothing read.
  ASSERT_TRUE(Matmul(stream(), blas(), DeviceEmpty(Shape{0, 4}), DeviceEmpty(Shape{4, 3}),
                     DeviceEmpty(Shape{0, 3}))
                  .ok());
}

TEST_F(GemmCudaTest, MatmulAddMatchesTheCpuKernel) {
  std::mt19937_64 rng(15);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const double tolerance = dtype == DType::kF32 ? 1e-5 : 1e-2;
    for (auto [m, n, k] : kShapes) {
      for (bool tb : {false, true}) {
        for (auto [with_bias, with_addend] : {std::pair{true, false}, {false, true}, {true, true},
                                             {false, false}}) {
          SCOPED_TRACE(::testing::Message() << m << "x" << n << "x" << k << " tb " << tb
                                            << " bias " << with_bias << " addend " << with_addend
                                            << " " << DTypeName(dtype));
          const Tensor a = RandomIn(Shape{m, k}, dtype, rng);
          const Tensor b = RandomIn(tb ? Shape{n, k} : Shape{k, n}, dtype, rng);
          const Tensor bias = with_bias ? RandomIn(Shape{n}, dtype, rng) : Tensor();
          const Tensor addend = with_addend ? RandomIn(Shape{m, n}, dtype, rng) : Tensor();
          const Tensor out = DeviceEmpty(Shape{m, n}, dtype);
          ASSERT_TRUE(MatmulAdd(stream(), blas(), ToDevice(a), ToDevice(b),
                                with_bias ? ToDevice(bias) : Tensor(),
                                with_addend ? ToDevice(addend) : Tensor(), out, false, tb)
                          .ok());
          const Tensor want = testing::EmptyF32(Shape{m, n});
          ASSERT_TRUE(cpu::MatmulAdd(ToF32(a), ToF32(b), with_bias ? ToF32(bias) : Tensor(),
                                     with_addend ? ToF32(addend) : Tensor(), want, false, tb)
                          .ok());
          ExpectRelativeError(ToF32(ToHost(out)), want, tolerance, "matmul add");
        }
      }
    }
  }
  // A bias into a transposed out view.
  const Tensor a = RandomTensor(Shape{9, 6}, rng), b = RandomTensor(Shape{6, 4}, rng);
  const Tensor bias = RandomTensor(Shape{4}, rng);
  const Tensor out_s = DeviceEmpty(Shape{4, 9});
  ASSERT_TRUE(MatmulAdd(stream(), blas(), ToDevice(a), ToDevice(b), ToDevice(bias), Tensor(),
                        out_s.Transpose(0, 1).value())
                  .ok());
  const Tensor want = testing::EmptyF32(Shape{9, 4});
  ASSERT_TRUE(cpu::MatmulAdd(a, b, bias, Tensor(), want).ok());
  ExpectRelativeError(ToF32(ToHost(out_s).Transpose(0, 1).value()), want, 1e-5,
                      "matmul add into a transposed view");
}

// A (batch, rows, cols) operand: `batch` matrices, or one broadcast to all (batch stride 0),
// stored as itself or transposed; the host and device views of the same values.
struct Batched {
  Tensor host, device;
};

TEST_F(GemmCudaTest, BatchedMatmulMatchesTheCpuKernel) {
  std::mt19937_64 rng(16);
  const int64_t batch = 5;
  auto make = [&](int64_t rows, int64_t cols, bool broadcast, bool stored_trans, DType dtype) {
    const int64_t sr = stored_trans ? cols : rows, sc = stored_trans ? rows : cols;
    const Tensor s = RandomIn(Shape{broadcast ? 1 : batch, sr, sc}, dtype, rng);
    const Tensor hs = ToF32(s), ds = ToDevice(s);
    auto view = [&](const Tensor& t) {
      Tensor v = broadcast ? Tensor::View(t.storage(), Shape{batch, sr, sc}, {0, sc, 1},
                                          t.offset(), t.dtype())
                                 .value()
                           : t;
      return stored_trans ? v.Transpose(1, 2).value() : v;
    };
    return Batched{view(hs), view(ds)};
  };
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const double tolerance = dtype == DType::kF32 ? 1e-5 : 1e-2;
    for (auto [m, n, k] : {std::tuple{1, 1, 1}, {7, 33, 129}, {33, 7, 65}, {64, 64, 3}}) {
      for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
          for (auto [bc_a, bc_b, stored_trans] :
               {std::tuple{false, false, false}, {true, false, true}, {false, true, false}}) {
            for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 2.0f}}) {
              SCOPED_TRACE(::testing::Message()
                           << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb
                           << " broadcast " << bc_a << bc_b << " stored_trans " << stored_trans
                           << " alpha " << alpha << " beta " << beta << " " << DTypeName(dtype));
              const Batched a = make(ta ? k : m, ta ? m : k, bc_a, stored_trans, dtype);
              const Batched b = make(tb ? n : k, tb ? k : n, bc_b, !stored_trans, dtype);
              const Tensor c = RandomTensor(Shape{batch, m, n}, rng);
              const Tensor out = beta == 0.0f ? DeviceEmpty(c.shape()) : ToDevice(c);
              ASSERT_TRUE(BatchedMatmul(stream(), blas(), a.device, b.device, out, ta, tb, alpha,
                                        beta)
                              .ok());
              ASSERT_TRUE(cpu::BatchedMatmul(a.host, b.host, c, ta, tb, alpha, beta).ok());
              ExpectRelativeError(ToHost(out), c, tolerance, "batched matmul");
            }
          }
        }
      }
    }
  }
}

TEST_F(GemmCudaTest, MatmulBackwardMatchesTheCpuKernel) {
  std::mt19937_64 rng(17);
  for (int rank : {2, 3}) {
    for (auto [m, n, k] : {std::tuple{1, 1, 1}, {7, 33, 129}, {129, 7, 33}}) {
      for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
          for (auto [want_da, want_db] : {std::pair{true, true}, {true, false}, {false, true}}) {
            SCOPED_TRACE(::testing::Message() << "rank " << rank << " " << m << "x" << n << "x"
                                              << k << " ta " << ta << " tb " << tb << " da "
                                              << want_da << " db " << want_db);
            auto shape = [&](int64_t r, int64_t c) {
              return rank == 3 ? Shape{3, r, c} : Shape{r, c};
            };
            const Tensor a = RandomTensor(ta ? shape(k, m) : shape(m, k), rng);
            const Tensor b = RandomTensor(tb ? shape(n, k) : shape(k, n), rng);
            const Tensor dout = RandomTensor(shape(m, n), rng);
            const Tensor da = want_da ? DeviceEmpty(a.shape()) : Tensor();
            const Tensor db = want_db ? DeviceEmpty(b.shape()) : Tensor();
            ASSERT_TRUE(MatmulBackward(stream(), blas(), ToDevice(a), ToDevice(b), ToDevice(dout),
                                       da, db, ta, tb)
                            .ok());
            const Tensor want_a = want_da ? testing::EmptyF32(a.shape()) : Tensor();
            const Tensor want_b = want_db ? testing::EmptyF32(b.shape()) : Tensor();
            ASSERT_TRUE(cpu::MatmulBackward(a, b, dout, want_a, want_b, ta, tb).ok());
            if (want_da) ExpectRelativeError(ToHost(da), want_a, 1e-5, "da");
            if (want_db) ExpectRelativeError(ToHost(db), want_b, 1e-5, "db");
          }
        }
      }
    }
  }
}

TEST_F(GemmCudaTest, RepeatedCallsAreBitwiseReproducible) {
  std::mt19937_64 rng(18);
  const Tensor a = ToDevice(RandomTensor(Shape{257, 129}, rng));
  const Tensor b = ToDevice(RandomTensor(Shape{129, 191}, rng));
  const Tensor out1 = DeviceEmpty(Shape{257, 191}), out2 = DeviceEmpty(Shape{257, 191});
  ASSERT_TRUE(Matmul(stream(), blas(), a, b, out1).ok());
  ASSERT_TRUE(Matmul(stream(), blas(), a, b, out2).ok());
  const Tensor h1 = ToHost(out1), h2 = ToHost(out2);
  for (int64_t i = 0; i < h1.numel(); ++i) {
    ASSERT_EQ(h1.data<float>()[i], h2.data<float>()[i]) << i;
  }
}

// The launchers check their arguments before they touch the device (or the handle, null here):
// device tensors are CUDA-tagged views of host bytes that nothing reads.
class GemmCudaChecks : public ::testing::Test {
 protected:
  testing::CudaTaggedViews on_cuda;
};

TEST_F(GemmCudaChecks, RefuseHostTensorsTypesAndShapes) {
  const Tensor a = on_cuda(Shape{4, 3}), b = on_cuda(Shape{3, 5}), out = on_cuda(Shape{4, 5});
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  ExpectStatus(Matmul(nullptr, nullptr, testing::EmptyF32(Shape{4, 3}), b, out), kInvalid,
               {"Matmul", "a", "not on a CUDA device"});
  ExpectStatus(Matmul(nullptr, nullptr, a, testing::EmptyF32(Shape{3, 5}), out), kInvalid,
               {"Matmul", "b", "not on a CUDA device"});
  ExpectStatus(Matmul(nullptr, nullptr, a, b, testing::EmptyF32(Shape{4, 5})), kInvalid,
               {"Matmul", "out", "not on a CUDA device"});
  ExpectStatus(Matmul(nullptr, nullptr, on_cuda(Shape{4, 3}, DType::kI32), b, out), kInvalid,
               {"Matmul", "a", "expected f32, bf16 or f16"});
  ExpectStatus(Matmul(nullptr, nullptr, on_cuda(Shape{4, 3}, DType::kBF16), b, out), kInvalid,
               {"Matmul", "b"});
  ExpectStatus(Matmul(nullptr, nullptr, on_cuda(Shape{4, 3}, DType::kBF16),
                      on_cuda(Shape{3, 5}, DType::kBF16), on_cuda(Shape{4, 5}, DType::kF16)),
               kInvalid, {"Matmul", "out", "expected f32 or bf16"});
  ExpectStatus(Matmul(nullptr, nullptr, a, on_cuda(Shape{4, 5}), out), kInvalid,
               {"Matmul", "inner dimensions differ"});
  ExpectStatus(Matmul(nullptr, nullptr, a, b, on_cuda(Shape{5, 4})), kInvalid,
               {"Matmul", "out", "expected [4, 5]"});
  ExpectStatus(Matmul(nullptr, nullptr, on_cuda(Shape{2, 4, 3}), b, out), kInvalid,
               {"Matmul", "a"});
  // No unit stride: every other element of every other row.
  const Tensor no_unit = on_cuda(Shape{8, 6}).Slice(0, 0, 8, 2).value().Slice(1, 0, 6, 2).value();
  ExpectStatus(Matmul(nullptr, nullptr, no_unit, b, out), kInvalid,
               {"Matmul", "a", "no unit stride"});
  // Well-formed, but no handle to run it with.
  ExpectStatus(Matmul(nullptr, nullptr, a, b, out), kInvalid, {"Matmul", "no cuBLAS handle"});
}

TEST(CublasStatusTest, NamesTheCallAndTheStatus) {
  EXPECT_TRUE(CublasStatus(CUBLAS_STATUS_SUCCESS, "cublasGemmEx").ok());
  ExpectStatus(CublasStatus(CUBLAS_STATUS_INVALID_VALUE, "Matmul: cublasGemmEx"),
               absl::StatusCode::kInvalidArgument,
               {"Matmul: cublasGemmEx failed", "CUBLAS_STATUS_INVALID_VALUE"});
  ExpectStatus(CublasStatus(CUBLAS_STATUS_ALLOC_FAILED, "cublasCreate"),
               absl::StatusCode::kResourceExhausted, {"cublasCreate", "CUBLAS_STATUS_ALLOC_FAILED"});
  ExpectStatus(CublasStatus(CUBLAS_STATUS_EXECUTION_FAILED, "cublasGemmEx"),
               absl::StatusCode::kInternal, {"CUBLAS_STATUS_EXECUTION_FAILED"});
}

TEST_F(GemmCudaChecks, MatmulAddChecksBiasAndAddend) {
  const Tensor a = on_cuda(Shape{4, 3}), b = on_cuda(Shape{3, 5}), out = on_cuda(Shape{4, 5});
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  ExpectStatus(MatmulAdd(nullptr, nullptr, a, b, on_cuda(Shape{4}), Tensor(), out), kInvalid,
               {"MatmulAdd", "bias"});
  ExpectStatus(MatmulAdd(nullptr, nullptr, a, b, on_cuda(Shape{5}, DType::kBF16), Tensor(), out),
               kInvalid, {"MatmulAdd", "bias"});
  ExpectStatus(MatmulAdd(nullptr, nullptr, a, b, testing::EmptyF32(Shape{5}), Tensor(), out),
               kInvalid, {"MatmulAdd", "bias", "not on a CUDA device"});
  ExpectStatus(MatmulAdd(nullptr, nullptr, a, b, Tensor(), on_cuda(Shape{5, 4}), out), kInvalid,
               {"MatmulAdd", "addend"});
  ExpectStatus(MatmulAdd(nullptr, nullptr, on_cuda(Shape{5, 3}), on_cuda(Shape{3, 4}), Tensor(),
                         on_cuda(Shape{5, 4}), out.Transpose(0, 1).value()),
               kInvalid, {"MatmulAdd", "transposed view", "addend needs row-major out"});
}

TEST_F(GemmCudaChecks, BatchedAndBackwardChecks) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  ExpectStatus(BatchedMatmul(nullptr, nullptr, on_cuda(Shape{2, 4, 3}), on_cuda(Shape{3, 3, 5}),
                             on_cuda(Shape{2, 4, 5})),
               kInvalid, {"BatchedMatmul", "batch sizes differ"});
  ExpectStatus(BatchedMatmul(nullptr, nullptr, on_cuda(Shape{2, 4, 3}), on_cuda(Shape{2, 3, 5}),
                             on_cuda(Shape{1, 4, 5})),
               kInvalid, {"BatchedMatmul", "batch sizes differ"});
  const Tensor one = on_cuda(Shape{1, 4, 5});
  const Tensor aliased =
      Tensor::View(one.storage(), Shape{2, 4, 5}, {0, 5, 1}, 0, DType::kF32).value();
  ExpectStatus(
      BatchedMatmul(nullptr, nullptr, on_cuda(Shape{2, 4, 3}), on_cuda(Shape{2, 3, 5}), aliased),
      kInvalid, {"BatchedMatmul", "out", "alias one matrix"});
  const Tensor a = on_cuda(Shape{4, 3}), b = on_cuda(Shape{3, 5}), dout = on_cuda(Shape{4, 5});
  ExpectStatus(MatmulBackward(nullptr, nullptr, a, b, dout, on_cuda(Shape{3, 4}), Tensor()),
               kInvalid, {"MatmulBackward", "da"});
  ExpectStatus(MatmulBackward(nullptr, nullptr, a, b, dout, Tensor(), on_cuda(Shape{5, 3})),
               kInvalid, {"MatmulBackward", "db"});
  ExpectStatus(MatmulBackward(nullptr, nullptr, a, b, on_cuda(Shape{5, 4}), Tensor(), Tensor()),
               kInvalid, {"MatmulBackward", "dout"});
  ExpectStatus(MatmulBackward(nullptr, nullptr, on_cuda(Shape{4}), b, dout, Tensor(), Tensor()),
               kInvalid, {"MatmulBackward", "rank 2 or 3"});
  ExpectStatus(MatmulBackward(nullptr, nullptr, a, b, dout, testing::EmptyF32(Shape{4, 3}),
                              Tensor()),
               kInvalid, {"MatmulBackward", "da", "not on a CUDA device"});
}

}  // namespace
}  // namespace strata::cuda
