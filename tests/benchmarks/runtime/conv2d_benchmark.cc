// conv2d forward + backward (dx, dw, db) at the sizes of a small MobileNetV2-style CNN on 28x28
// Fashion-MNIST images, batch 64.
#include <benchmark/benchmark.h>

#include <vector>

#include "runtime/cpu/conv2d.h"
#include "runtime/threading.h"
#include "tests/benchmarks/runtime/benchmark_util.h"

namespace strata::bench {
namespace {

void BM_Conv(benchmark::State& state, Shape x_shape, Shape w_shape, cpu::Conv2dParams p) {
  const Tensor x = Random(x_shape), w = Random(w_shape), b = Random(Shape{w_shape[0]});
  const Tensor y = Empty(cpu::Conv2dOutputShape(x_shape, w_shape, p).value());
  const Tensor dy = Random(y.shape()), dx = Empty(x_shape), dw = Empty(w_shape), db = Empty(b.shape());
  std::vector<float> ws(cpu::Conv2dWorkspaceBytes(x_shape, w_shape, p, NumThreads()) / sizeof(float) + 1);
  for (auto _ : state) {
    Check(cpu::Conv2dForward(x, w, b, y, p, absl::MakeSpan(ws)));
    Check(cpu::Conv2dBackward(x, w, dy, dx, dw, db, p, absl::MakeSpan(ws)));
  }
}

constexpr cpu::Conv2dParams kPad1{.pad_h = 1, .pad_w = 1};
BENCHMARK_CAPTURE(BM_Conv, stem, Shape{64, 1, 28, 28}, Shape{32, 1, 3, 3}, kPad1)
    ->Name("conv2d/fwd+bwd/regular_N64_C1_28x28_OC32_k3s1p1")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Conv, regular, Shape{64, 32, 14, 14}, Shape{64, 32, 3, 3}, kPad1)
    ->Name("conv2d/fwd+bwd/regular_N64_C32_14x14_OC64_k3s1p1")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Conv, pointwise, Shape{64, 32, 14, 14}, Shape{96, 32, 1, 1}, cpu::Conv2dParams{})
    ->Name("conv2d/fwd+bwd/pointwise_N64_C32_14x14_OC96_k1")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Conv, depthwise, Shape{64, 96, 14, 14}, Shape{96, 1, 3, 3},
                  cpu::Conv2dParams{.pad_h = 1, .pad_w = 1, .groups = 96})
    ->Name("conv2d/fwd+bwd/depthwise_N64_C96_14x14_k3s1p1")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Conv, depthwise_s2, Shape{64, 96, 14, 14}, Shape{96, 1, 3, 3},
                  cpu::Conv2dParams{.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 96})
    ->Name("conv2d/fwd+bwd/depthwise_N64_C96_14x14_k3s2p1")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace strata::bench
