#include "runtime/cpu/gemm.h"

#include <random>
#include <string>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu {
namespace {

using testing::ExpectClose;
using testing::ExpectStatus;
using testing::ToDouble;
using testing::Vec;

// out = alpha * op(a) @ op(b) + beta * c in double; a, b given as stored (row-major).
Vec Reference(const Vec& a, const Vec& b, const Vec& c, int64_t m, int64_t n, int64_t k, bool ta,
              bool tb, double alpha, double beta) {
  Vec out(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      out[i * n + j] = alpha * s + (beta != 0 ? beta * c[i * n + j] : 0.0);
    }
  return out;
}

TEST(MatmulTest, AllTransposesOddSizesStridedViewsAlphaBeta) {
  std::mt19937_64 rng(11);
  for (auto [m, k, n] : {std::tuple{1, 1, 1}, {1, 7, 5}, {13, 1, 3}, {17, 31, 23}, {64, 37, 2}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (auto [strided, alpha, beta] : {std::tuple{false, 0.5f, 2.0f}, {true, 0.5f, 2.0f},
                                            {false, 1.0f, 0.0f}, {true, 1.0f, 1.0f}}) {
          SCOPED_TRACE(::testing::Message() << m << "x" << k << "x" << n << " ta " << ta << " tb "
                                            << tb << " strided " << strided << " alpha "
                                            << alpha << " beta " << beta);
          Tensor a = testing::RandomTensor(ta ? Shape{k, m} : Shape{m, k}, rng);
          Tensor b = testing::RandomTensor(tb ? Shape{n, k} : Shape{k, n}, rng);
          Tensor c = testing::RandomTensor(Shape{m, n}, rng);
          const Vec av = ToDouble(a), bv = ToDouble(b), cv = ToDouble(c);
          if (strided) {
            a = testing::MakeStrided(a);
            b = testing::MakeStrided(b);
            c = testing::MakeStrided(c);
          }
          ASSERT_TRUE(Matmul(a, b, c, ta, tb, alpha, beta).ok());
          ExpectClose(c, Reference(av, bv, cv, m, n, k, ta, tb, alpha, beta), 1e-5, 1e-5, "matmul");
        }
      }
    }
  }
}

TEST(MatmulTest, TransposedViewsNeedNoCopy) {
  std::mt19937_64 rng(3);
  const Tensor a = testing::RandomTensor(Shape{9, 6}, rng);
  const Tensor b = testing::RandomTensor(Shape{9, 4}, rng);
  // a^T as a view (strides (1, 6)) times b.
  const Tensor out = testing::EmptyF32(Shape{6, 4});
  ASSERT_TRUE(Matmul(a.Transpose(0, 1).value(), b, out).ok());
  ExpectClose(out, Reference(ToDouble(a), ToDouble(b), {}, 6, 4, 9, true, false, 1, 0), 1e-5, 1e-5,
              "a^T b");
  // Writing into a transposed output view: out^T = b^T a.
  const Tensor out_t = testing::EmptyF32(Shape{6, 4});
  ASSERT_TRUE(Matmul(b, a, out_t.Transpose(0, 1).value(), true, false).ok());
  ExpectClose(out_t, ToDouble(out), 1e-5, 1e-5, "into a transposed view");
}

TEST(MatmulTest, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(5);
  const int64_t m = 4, k = 5, n = 3;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "ta " << ta << " tb " << tb);
      const Tensor a = testing::RandomTensor(ta ? Shape{k, m} : Shape{m, k}, rng);
      const Tensor b = testing::RandomTensor(tb ? Shape{n, k} : Shape{k, n}, rng);
      const Tensor dy = testing::RandomTensor(Shape{m, n}, rng);
      const Tensor da = testing::EmptyF32(a.shape()), db = testing::EmptyF32(b.shape());
      ASSERT_TRUE(MatmulBackward(a, b, dy, da, db, ta, tb).ok());
      const Vec av = ToDouble(a), bv = ToDouble(b), dyv = ToDouble(dy);
      ExpectClose(da, testing::NumericalGradient([&](const Vec& v) { return Reference(v, bv, {}, m, n, k, ta, tb, 1, 0); }, av, dyv),
                  1e-4, 1e-5, "da");
      ExpectClose(db, testing::NumericalGradient([&](const Vec& v) { return Reference(av, v, {}, m, n, k, ta, tb, 1, 0); }, bv, dyv),
                  1e-4, 1e-5, "db");
    }
  }
}

TEST(MatmulTest, BatchedWithAnyBatchStride) {
  std::mt19937_64 rng(8);
  for (int64_t batch : {1, 3}) {
    const Tensor a = testing::RandomTensor(Shape{batch, 5, 7}, rng);
    const Tensor bt = testing::RandomTensor(Shape{7, batch, 3}, rng);
    const Tensor b = bt.Transpose(0, 1).value();  // (batch, 7, 3) with batch stride 3
    const Tensor out = testing::EmptyF32(Shape{batch, 5, 3});
    ASSERT_TRUE(BatchedMatmul(a, b, out).ok());
    const Vec av = ToDouble(a), bv = ToDouble(b), ov = ToDouble(out);
    for (int64_t i = 0; i < batch; ++i) {
      const Vec ref = Reference(Vec(av.begin() + i * 35, av.begin() + (i + 1) * 35),
                                Vec(bv.begin() + i * 21, bv.begin() + (i + 1) * 21), {}, 5, 3, 7,
                                false, false, 1, 0);
      ExpectClose(Vec(ov.begin() + i * 15, ov.begin() + (i + 1) * 15), ref, 1e-5, 1e-5, "batch");
    }
  }
}

TEST(MatmulTest, MatchesPyTorch) {
  const SafetensorsFile f = testing::LoadFixture("gemm");
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const std::string name = absl::StrCat("t", ta, tb, ".");
      SCOPED_TRACE(name);
      auto get = [&](const char* k) { return f.Get(name + k).value(); };
      const Tensor y = testing::EmptyF32(get("y").shape());
      ASSERT_TRUE(Matmul(get("a"), get("b"), y, ta, tb).ok());
      ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-6, "y");
      const Tensor da = testing::EmptyF32(get("a").shape()), db = testing::EmptyF32(get("b").shape());
      ASSERT_TRUE(MatmulBackward(get("a"), get("b"), get("dy"), da, db, ta, tb).ok());
      ExpectClose(da, ToDouble(get("da")), 1e-5, 1e-6, "da");
      ExpectClose(db, ToDouble(get("db")), 1e-5, 1e-6, "db");
    }
  }
  auto get = [&](const char* k) { return f.Get(std::string("batched.") + k).value(); };
  const Tensor y = testing::EmptyF32(get("y").shape());
  ASSERT_TRUE(BatchedMatmul(get("a"), get("b"), y, false, true).ok());
  ExpectClose(y, ToDouble(get("y")), 1e-5, 1e-6, "batched y");
  const Tensor da = testing::EmptyF32(get("a").shape()), db = testing::EmptyF32(get("b").shape());
  ASSERT_TRUE(MatmulBackward(get("a"), get("b"), get("dy"), da, db, false, true).ok());
  ExpectClose(da, ToDouble(get("da")), 1e-5, 1e-6, "batched da");
  ExpectClose(db, ToDouble(get("db")), 1e-5, 1e-6, "batched db");
}

TEST(MatmulTest, MatmulAddStartsFromBiasAndAddendOnEveryLayout) {
  std::mt19937_64 rng(23);
  // Sizes past the own sgemm's 8 x 48 tile; transposed a and transposed out take OpenBLAS.
  const int64_t m = 19, k = 50, n = 53;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (bool t_out : {false, true}) {
        for (int terms = 0; terms < 4; ++terms) {  // none, bias, addend, both
          if (t_out && terms >= 2) continue;       // an addend needs a row-major out
          SCOPED_TRACE(::testing::Message() << "ta " << ta << " tb " << tb << " out transposed "
                                            << t_out << " terms " << terms);
          const Tensor a = testing::RandomTensor(ta ? Shape{k, m} : Shape{m, k}, rng);
          const Tensor b = testing::RandomTensor(tb ? Shape{n, k} : Shape{k, n}, rng);
          const Tensor bias = terms & 1 ? testing::RandomTensor(Shape{n}, rng) : Tensor();
          const Tensor addend = terms & 2 ? testing::RandomTensor(Shape{m, n}, rng) : Tensor();
          const Tensor store = testing::EmptyF32(t_out ? Shape{n, m} : Shape{m, n});
          const Tensor out = t_out ? store.Transpose(0, 1).value() : store;
          ASSERT_TRUE(MatmulAdd(a, b, bias, addend, out, ta, tb).ok());
          Vec expected = Reference(ToDouble(a), ToDouble(b), {}, m, n, k, ta, tb, 1, 0);
          const Vec bv = bias.defined() ? ToDouble(bias) : Vec(n, 0.0);
          const Vec av = addend.defined() ? ToDouble(addend) : Vec(m * n, 0.0);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) expected[i * n + j] += bv[j] + av[i * n + j];
          ExpectClose(out, expected, 1e-5, 1e-5, "matmul add");
        }
      }
    }
  }
}

TEST(MatmulTest, BadInput) {
  std::mt19937_64 rng(1);
  const Tensor a = testing::RandomTensor(Shape{4, 5}, rng);
  const Tensor b = testing::RandomTensor(Shape{6, 3}, rng);
  ExpectStatus(Matmul(a, b, testing::EmptyF32(Shape{4, 3})), absl::StatusCode::kInvalidArgument,
               {"inner dimensions differ", "[4, 5]", "[6, 3]"});
  const Tensor b5 = testing::RandomTensor(Shape{5, 3}, rng);
  ExpectStatus(Matmul(a, b5, testing::EmptyF32(Shape{4, 4})), absl::StatusCode::kInvalidArgument,
               {"out", "[4, 3]"});
  ExpectStatus(Matmul(a, testing::FromDouble(Vec(15, 1.0), Shape{5, 3}, DType::kBF16),
                      testing::EmptyF32(Shape{4, 3})),
               absl::StatusCode::kInvalidArgument, {"b", "bf16", "f32"});
  ExpectStatus(Matmul(testing::RandomTensor(Shape{2, 4, 5}, rng), b5, testing::EmptyF32(Shape{4, 3})),
               absl::StatusCode::kInvalidArgument, {"rank 2"});
  const Tensor big = testing::RandomTensor(Shape{8, 10}, rng);
  const Tensor every_other = big.Slice(0, 0, 8, 2).value().Slice(1, 0, 10, 2).value();  // (4, 5)
  ExpectStatus(Matmul(every_other, b5, testing::EmptyF32(Shape{4, 3})),
               absl::StatusCode::kInvalidArgument, {"no unit stride", "Contiguous"});
  ExpectStatus(BatchedMatmul(testing::RandomTensor(Shape{2, 4, 5}, rng),
                             testing::RandomTensor(Shape{3, 5, 3}, rng),
                             testing::EmptyF32(Shape{2, 4, 3})),
               absl::StatusCode::kInvalidArgument, {"batch sizes differ"});
  const Tensor out = testing::EmptyF32(Shape{4, 3});
  ExpectStatus(MatmulAdd(a, b5, testing::RandomTensor(Shape{4}, rng), Tensor(), out),
               absl::StatusCode::kInvalidArgument, {"bias", "[4]", "[3]"});
  ExpectStatus(MatmulAdd(a, b5, Tensor(), testing::RandomTensor(Shape{3, 4}, rng), out),
               absl::StatusCode::kInvalidArgument, {"addend", "[3, 4]"});
  ExpectStatus(MatmulAdd(a, b5, Tensor(), testing::RandomTensor(Shape{4, 3}, rng),
                         testing::EmptyF32(Shape{3, 4}).Transpose(0, 1).value()),
               absl::StatusCode::kInvalidArgument, {"addend", "row-major out"});
}

}  // namespace
}  // namespace strata::cpu
