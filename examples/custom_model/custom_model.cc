// A model written from scratch with strata's C++ API: a custom residual block, a module tree,
// a frozen input layer, and a compiled training step. Classifies points of three interleaved
// spirals (a task a linear model cannot solve).
//
//   build/release/bin/strata-custom-model [--steps 300] [--dump-graph]
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <string>

#include "examples/common/flags.h"
#include "graph/compile.h"
#include "graph/nn/layers.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace strata::examples {
namespace {

using graph::Init;
using graph::Layer;
using graph::Var;
namespace nn = graph::nn;
namespace ops = graph::ops;

// x + W2 gelu(W1 layernorm(x)): parameters are declared once, with names and initializers; the
// forward is plain C++ over symbolic values.
class ResidualBlock : public Layer {
 public:
  explicit ResidualBlock(int64_t width)
      : norm_(Add<nn::LayerNorm>("norm", width)),
        up_(Add<nn::Linear>("up", width, 4 * width)),
        down_(Add<nn::Linear>("down", 4 * width, width)) {
    // Start each block as the identity: the residual branch's last layer begins at zero.
    down_->weight()->set_init(Init::Zeros());
  }
  Var Forward(Var x) override {
    Var h = (*up_)((*norm_)(x));
    TraceScope scope(*this, x);  // names the nodes below after this module in --dump-graph
    return ops::Add(x, (*down_)(ops::Gelu(h)));
  }

 private:
  nn::LayerNorm* norm_;
  nn::Linear* up_;
  nn::Linear* down_;
};

class SpiralNet : public Layer {
 public:
  SpiralNet(int64_t width, int blocks) {
    embed_ = Add<nn::Linear>("embed", 2, width);
    auto* body = Add<nn::Sequential>("body");
    for (int i = 0; i < blocks; ++i) body->Append<ResidualBlock>(width);
    body_ = body;
    head_ = Add<nn::Linear>("head", width, 3);
  }
  Var Forward(Var x) override { return (*head_)((*body_)((*embed_)(x))); }
  nn::Linear* embed() const { return embed_; }

 private:
  nn::Linear* embed_;
  Layer* body_;
  nn::Linear* head_;
};

// n points per class on three spiral arms, with noise.
void Spirals(int64_t n, uint64_t seed, float* xy, int32_t* label) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.08f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t i = 0; i < 3 * n; ++i) {
    const int c = static_cast<int>(i % 3);
    const float r = u(rng);
    const float angle = 4.0f * r + c * 2.0944f;
    xy[2 * i] = r * std::cos(angle) + noise(rng);
    xy[2 * i + 1] = r * std::sin(angle) + noise(rng);
    label[i] = c;
  }
}

absl::Status Main(int64_t steps, bool dump) {
  constexpr int64_t kBatch = 96;
  SpiralNet net(/*width=*/32, /*blocks=*/3);
  // Freeze the input projection: no gradient, no optimizer state and no update are compiled for
  // it (see --dump-graph).
  net.embed()->SetTrainable(false);

  graph::TrainOptions o;
  o.optimizer = graph::OptimizerOptions::AdamW(0.9, 0.999, 1e-8, 1e-4);
  o.schedule = {.kind = optim::LrSchedule::kCosine, .max_lr = 1e-2, .min_lr = 1e-3,
                .warmup_steps = 20, .total_steps = steps};
  o.dump_graph = dump;
  STRATA_ASSIGN_OR_RETURN(
      auto program,
      graph::Compile(net, {{"points", Shape{kBatch, 2}, DType::kF32}, {"labels", Shape{kBatch}, DType::kI32}},
                     [&](absl::Span<const Var> in) { return ops::CrossEntropy(net(in[0]), in[1]); },
                     o));
  if (dump) std::cout << program->dump();
  std::cout << program->memory_report().ToString() << "\n";

  Tensor points = Tensor::Empty(Shape{kBatch, 2}, DType::kF32, DefaultCpuAllocator()).value();
  Tensor labels = Tensor::Empty(Shape{kBatch}, DType::kI32, DefaultCpuAllocator()).value();
  for (int64_t s = 0; s < steps; ++s) {
    Spirals(kBatch / 3, static_cast<uint64_t>(s), points.data<float>(), labels.data<int32_t>());
    STRATA_ASSIGN_OR_RETURN(const graph::StepStats st, program->Step({points, labels}));
    if (st.step % 25 == 0 || st.step == 1) {
      std::printf("step %4lld | loss %.4f | lr %.2e | %.2f ms\n", static_cast<long long>(st.step),
                  st.loss, st.lr, st.step_ms);
    }
  }
  Spirals(kBatch / 3, /*seed=*/1u << 20, points.data<float>(), labels.data<int32_t>());
  STRATA_ASSIGN_OR_RETURN(const double held_out, program->Evaluate({points, labels}));
  std::printf("held-out loss %.4f (chance: %.4f)\n", held_out, std::log(3.0));
  return absl::OkStatus();
}

}  // namespace
}  // namespace strata::examples

int main(int argc, char** argv) {
  int64_t steps = 300;
  bool dump = false;
  strata::examples::Flags f("strata-custom-model", "Trains a custom residual MLP on three spirals.");
  f.Add("steps", &steps, {.min = 1, .max = 1000000}, "optimizer steps");
  f.Add("dump-graph", &dump, "print the IR after each compile pass");
  if (std::optional<int> code = f.ParseOrExitCode(argc, argv)) return *code;
  return f.ExitCode(strata::examples::Main(steps, dump));
}
