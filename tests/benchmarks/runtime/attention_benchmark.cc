// Causal attention (B = 8, H = 6, T = 256, D = 64, q/k/v as views into a packed qkv buffer, as
// in GPT) and softmax cross-entropy at vocabularies 256 and 8192.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "runtime/cpu/attention.h"
#include "runtime/cpu/cross_entropy.h"
#include "runtime/threading.h"
#include "tests/benchmarks/runtime/benchmark_util.h"

namespace strata::bench {
namespace {

constexpr int64_t kB = 8, kH = 6, kT = 256, kD = 64;

struct AttentionSetup {
  Tensor qkv = Random(Shape{kB, kT, 3 * kH * kD});
  Tensor dqkv = Empty(qkv.shape());
  Tensor y = Empty(Shape{kB, kT, kH * kD});
  Tensor dy = Random(y.shape());
  Tensor lse = Empty(Shape{kB, kH, kT});
  std::vector<float> ws = std::vector<float>(
      cpu::AttentionWorkspaceBytes(kB, kH, kT, kD, NumThreads()) / sizeof(float));

  static Tensor Packed(const Tensor& t, int which) {
    return t.Reshape({kB, kT, 3, kH, kD}).value().Select(2, which).value().Permute({0, 2, 1, 3}).value();
  }
  static Tensor Heads(const Tensor& t) {
    return t.Reshape({kB, kT, kH, kD}).value().Permute({0, 2, 1, 3}).value();
  }
};

void BM_AttentionFwd(benchmark::State& state) {
  AttentionSetup s;
  const float scale = 1.0f / std::sqrt(static_cast<float>(kD));
  for (auto _ : state) {
    Check(cpu::CausalAttentionForward(s.Packed(s.qkv, 0), s.Packed(s.qkv, 1), s.Packed(s.qkv, 2),
                                      s.Heads(s.y), s.lse, scale, absl::MakeSpan(s.ws)));
  }
}
BENCHMARK(BM_AttentionFwd)->Name("attention/fwd/B8_H6_T256_D64")->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_AttentionFwdBwd(benchmark::State& state) {
  AttentionSetup s;
  const float scale = 1.0f / std::sqrt(static_cast<float>(kD));
  const Tensor q = s.Packed(s.qkv, 0), k = s.Packed(s.qkv, 1), v = s.Packed(s.qkv, 2);
  const Tensor out = s.Heads(s.y), dout = s.Heads(s.dy);
  for (auto _ : state) {
    Check(cpu::CausalAttentionForward(q, k, v, out, s.lse, scale, absl::MakeSpan(s.ws)));
    Check(cpu::CausalAttentionBackward(q, k, v, s.lse, dout, s.Packed(s.dqkv, 0),
                                       s.Packed(s.dqkv, 1), s.Packed(s.dqkv, 2), scale,
                                       absl::MakeSpan(s.ws)));
  }
}
BENCHMARK(BM_AttentionFwdBwd)->Name("attention/fwd+bwd/B8_H6_T256_D64")->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_CrossEntropy(benchmark::State& state, int64_t vocab) {
  const Tensor logits = Random(Shape{2048, vocab}, -4, 4), d = Empty(logits.shape());
  Tensor targets = Empty(Shape{2048}, DType::kI64);
  for (int64_t i = 0; i < 2048; ++i) targets.data<int64_t>()[i] = (i * 7919) % vocab;
  const Tensor loss = Empty(Shape{1});
  for (auto _ : state) Check(cpu::SoftmaxCrossEntropy(logits, targets, loss, d));
}
BENCHMARK_CAPTURE(BM_CrossEntropy, v256, 256)->Name("cross_entropy/fwd+bwd/2048x256")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CrossEntropy, v8192, 8192)->Name("cross_entropy/fwd+bwd/2048x8192")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace strata::bench
