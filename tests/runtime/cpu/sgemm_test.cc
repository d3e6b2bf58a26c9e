#include "runtime/cpu/internal/sgemm.h"

#include <omp.h>

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::cpu::internal {
namespace {

using testing::ExpectClose;
using testing::Vec;

std::vector<float> Random(int64_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Operands in padded buffers (leading dimensions wider than the matrices), so that a kernel
// reading or writing past a row's end shows up as a wrong value or a changed pad.
struct Problem {
  int64_t m, n, k;
  bool a_transposed, b_transposed, bias, addend, accumulate;
  std::vector<float> a, b, c, bias_v, addend_v;
  int64_t lda, ldb, ldc, ld_addend;

  Problem(int64_t m_, int64_t n_, int64_t k_, bool at, bool bt, bool with_bias, bool with_addend,
          bool acc, std::mt19937_64& rng)
      : m(m_), n(n_), k(k_), a_transposed(at), b_transposed(bt), bias(with_bias),
        addend(with_addend), accumulate(acc), lda((at ? m_ : k_) + 3), ldb((bt ? k_ : n_) + 5),
        ldc(n_ + 7), ld_addend(n_ + 2) {
    a = Random((at ? k : m) * lda, rng);
    b = Random((bt ? n : k) * ldb, rng);
    c = Random(m * ldc, rng);
    bias_v = Random(n, rng);
    addend_v = Random(m * ld_addend, rng);
  }

  SgemmArgs Args(float* out) const {
    SgemmArgs g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = a.data();
    g.lda = lda;
    g.trans_a = a_transposed;
    g.b = b.data();
    g.b_rs = b_transposed ? 1 : ldb;
    g.b_cs = b_transposed ? ldb : 1;
    g.c = out;
    g.ldc = ldc;
    g.bias = bias ? bias_v.data() : nullptr;
    g.addend = addend ? addend_v.data() : nullptr;
    g.ld_addend = ld_addend;
    g.accumulate = accumulate;
    return g;
  }

  // The whole padded C buffer after the product, in double: pads unchanged.
  Vec Reference() const {
    Vec out(c.begin(), c.end());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = accumulate ? c[i * ldc + j] : 0.0;
        if (bias) s += bias_v[j];
        if (addend) s += addend_v[i * ld_addend + j];
        for (int64_t p = 0; p < k; ++p)
          s += double{a_transposed ? a[p * lda + i] : a[i * lda + p]} *
               (b_transposed ? b[j * ldb + p] : b[p * ldb + j]);
        out[i * ldc + j] = s;
      }
    return out;
  }
};

Vec AsDouble(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

TEST(SgemmTest, MatchesDoubleReferenceOnEdgeShapesEveryLayoutAndEveryStart) {
  std::mt19937_64 rng(17);
  // m around the 8-row tile, n around the 48-column panel and past the 768-column block, k
  // empty, short, and past the 384-deep block (uneven split).
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 47, 5},
                         {8, 48, 384}, {9, 49, 385}, {17, 100, 0}, {70, 800, 97},
                         {33, 16, 900}, {3, 770, 20}}) {
    for (int layout = 0; layout < 4; ++layout) {
      const bool at = layout & 1, bt = layout & 2;
      for (int start = 0; start < 4; ++start) {  // plain, bias, bias + addend, accumulate
        SCOPED_TRACE(::testing::Message() << m << "x" << n << "x" << k << " a transposed " << at
                                          << " b transposed " << bt << " start " << start);
        Problem pr(m, n, k, at, bt, start == 1 || start == 2, start == 2, start == 3, rng);
        std::vector<float> out = pr.c;
        Sgemm(pr.Args(out.data()));
        // fp32 rounding grows with the depth k; a wrong or missing term is off by O(1).
        ExpectClose(AsDouble(out), pr.Reference(), 1e-5, 2e-7 * (k + 10), "sgemm");
      }
    }
  }
}

class SgemmThreadsTest : public ::testing::TestWithParam<bool> {};

TEST_P(SgemmThreadsTest, SameBitsOnAnyNumberOfThreadsAndInsideAParallelRegion) {
  std::mt19937_64 rng(5);
  // More row tiles than one thread's chunk, so that a transposed A is packed more than once.
  const Problem pr(300, 300, 500, GetParam(), true, true, true, false, rng);
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    std::vector<float> out = pr.c;
    Sgemm(pr.Args(out.data()));
    results.push_back(out);
  }
  omp_set_num_threads(saved);
  std::vector<float> nested = pr.c;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    Sgemm(pr.Args(nested.data()));
  }
  results.push_back(nested);
  ExpectClose(AsDouble(results[0]), pr.Reference(), 1e-5, 2e-7 * 510, "one thread");
  for (size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "run " << i;
}

INSTANTIATE_TEST_SUITE_P(ALayouts, SgemmThreadsTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "ATransposed" : "ARowMajor"; });

TEST(SgemmTest, SupportsNeedsAUnitStrideAndGatherableOffsets) {
  SgemmArgs g;
  g.b_rs = 1;
  g.b_cs = int64_t{1} << 26;  // 48 columns apart overflow 32-bit byte offsets
  EXPECT_FALSE(SgemmSupports(g));
  g.b_rs = 2;
  g.b_cs = 3;  // no unit stride
  EXPECT_FALSE(SgemmSupports(g));
#if defined(__AVX512F__)
  g.b_rs = 1;
  g.b_cs = 1000;
  EXPECT_TRUE(SgemmSupports(g));
  g.b_rs = 1000;
  g.b_cs = 1;
  EXPECT_TRUE(SgemmSupports(g));
#endif
}

}  // namespace
}  // namespace strata::cpu::internal
