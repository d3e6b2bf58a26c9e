// LayerNorm, GELU, softmax and the residual add at GPT sizes (d = 384, T = 256, batch 8, 6 heads).
#include <benchmark/benchmark.h>

#include "runtime/cpu/activation.h"
#include "runtime/cpu/elementwise.h"
#include "runtime/cpu/layernorm.h"
#include "runtime/cpu/softmax.h"
#include "tests/benchmarks/runtime/benchmark_util.h"

namespace strata::bench {
namespace {

void BM_LayerNorm(benchmark::State& state) {
  const Tensor x = Random(Shape{2048, 384}), g = Random(Shape{384}), b = Random(Shape{384});
  const Tensor y = Empty(x.shape()), mean = Empty(Shape{2048}), rstd = Empty(Shape{2048});
  const Tensor dy = Random(x.shape()), dx = Empty(x.shape()), dg = Empty(g.shape()), db = Empty(b.shape());
  for (auto _ : state) {
    Check(cpu::LayerNormForward(x, g, b, 1e-5f, y, mean, rstd));
    Check(cpu::LayerNormBackward(x, g, mean, rstd, dy, dx, dg, db));
  }
}
BENCHMARK(BM_LayerNorm)->Name("layernorm/fwd+bwd/2048x384")->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Gelu(benchmark::State& state) {
  const Tensor x = Random(Shape{2048, 1536}, -4, 4), y = Empty(x.shape());
  const Tensor dy = Random(x.shape()), dx = Empty(x.shape());
  for (auto _ : state) {
    Check(cpu::GeluForward(x, y));
    Check(cpu::GeluBackward(x, dy, dx));
  }
}
BENCHMARK(BM_Gelu)->Name("gelu/fwd+bwd/2048x1536")->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Softmax(benchmark::State& state) {
  const Tensor x = Random(Shape{8 * 6 * 256, 256}, -4, 4), y = Empty(x.shape());
  const Tensor dy = Random(x.shape()), dx = Empty(x.shape());
  for (auto _ : state) {
    Check(cpu::SoftmaxForward(x, y));
    Check(cpu::SoftmaxBackward(y, dy, dx));
  }
}
BENCHMARK(BM_Softmax)->Name("softmax/fwd+bwd/12288x256")->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Add(benchmark::State& state) {
  const Tensor a = Random(Shape{2048, 384}), b = Random(Shape{2048, 384}), out = Empty(a.shape());
  for (auto _ : state) Check(cpu::Add(a, b, out));
}
BENCHMARK(BM_Add)->Name("add/fwd/2048x384")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace strata::bench
