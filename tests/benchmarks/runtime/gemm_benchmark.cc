// GEMM and linear layers at the sizes of a GPT with d = 384, T = 256, batch 8 (M = 2048 rows).
// "gemm/strata" and "gemm/openblas" run the same product through Matmul and raw cblas_sgemm;
// "dw:" names a weight gradient's product, whose left operand is stored transposed.
// STRATA_BENCH_GEMM_SHAPES="MxKxN,..." adds gemm/openblas at other shapes (launch/bench-gpt
// measures the sgemm peak at its model's own shapes).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cblas.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/linear.h"
#include "tests/benchmarks/runtime/benchmark_util.h"

namespace strata::bench {
namespace {

constexpr int64_t kRows = 8 * 256;

// The four linear layers of a GPT block: (in, out).
constexpr std::pair<int64_t, int64_t> kLayers[] = {{384, 1152}, {384, 384}, {384, 1536}, {1536, 384}};

void BM_LinearFwdBwd(benchmark::State& state, int64_t in, int64_t out) {
  const Tensor x = Random(Shape{kRows, in}), w = Random(Shape{out, in}), b = Random(Shape{out});
  const Tensor y = Empty(Shape{kRows, out}), dy = Random(Shape{kRows, out});
  const Tensor dx = Empty(x.shape()), dw = Empty(w.shape()), db = Empty(b.shape());
  for (auto _ : state) {
    Check(cpu::LinearForward(x, w, b, y));
    Check(cpu::LinearBackward(x, w, dy, dx, dw, db));
  }
  state.SetItemsProcessed(state.iterations() * 6 * kRows * in * out);  // flops
}

// c (m, n) = op(a) b, with a stored (k, m) when trans_a, as a weight gradient's dy in dy^T x.
void BM_GemmStrata(benchmark::State& state, int64_t m, int64_t k, int64_t n, bool trans_a) {
  const Tensor a = Random(trans_a ? Shape{k, m} : Shape{m, k}), b = Random(Shape{k, n});
  const Tensor c = Empty(Shape{m, n});
  for (auto _ : state) Check(cpu::Matmul(a, b, c, trans_a));
  state.SetItemsProcessed(state.iterations() * 2 * m * n * k);
}

void BM_GemmOpenBlas(benchmark::State& state, int64_t m, int64_t k, int64_t n, bool trans_a) {
  const Tensor a = Random(trans_a ? Shape{k, m} : Shape{m, k}), b = Random(Shape{k, n});
  const Tensor c = Empty(Shape{m, n});
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, CblasNoTrans, m, n, k, 1.0f,
                a.data<float>(), trans_a ? m : k, b.data<float>(), n, 0.0f, c.data<float>(), n);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * 2 * m * n * k);
}

[[maybe_unused]] const bool kRegistered = [] {
  const auto add = [](const std::string& name, auto fn, auto... args) {
    benchmark::RegisterBenchmark(name.c_str(), fn, args...)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (auto [in, out] : kLayers) {
    const std::string shape =
        std::to_string(kRows) + "x" + std::to_string(in) + "x" + std::to_string(out);
    add("linear/fwd+bwd/" + shape, BM_LinearFwdBwd, in, out);
    add("gemm/strata/" + shape, BM_GemmStrata, kRows, in, out, false);
    add("gemm/openblas/" + shape, BM_GemmOpenBlas, kRows, in, out, false);
    // The layer's weight gradient (out, in) = dy^T (out, rows) x (rows, in).
    const std::string dw =
        "dw:" + std::to_string(out) + "x" + std::to_string(kRows) + "x" + std::to_string(in);
    add("gemm/strata/" + dw, BM_GemmStrata, out, kRows, in, true);
    add("gemm/openblas/" + dw, BM_GemmOpenBlas, out, kRows, in, true);
  }
  if (const char* extra = std::getenv("STRATA_BENCH_GEMM_SHAPES")) {
    std::string list = extra;
    for (size_t start = 0; start < list.size();) {
      const size_t end = std::min(list.find(',', start), list.size());
      const std::string shape = list.substr(start, end - start);
      long long m = 0, k = 0, n = 0;
      if (std::sscanf(shape.c_str(), "%lldx%lldx%lld", &m, &k, &n) != 3 || m <= 0 || k <= 0 || n <= 0) {
        std::fprintf(stderr, "STRATA_BENCH_GEMM_SHAPES: '%s' is not MxKxN\n", shape.c_str());
        std::exit(2);
      }
      add("gemm/openblas/" + shape, BM_GemmOpenBlas, m, k, n, false);
      start = end + 1;
    }
  }
  return true;
}();

}  // namespace
}  // namespace strata::bench
