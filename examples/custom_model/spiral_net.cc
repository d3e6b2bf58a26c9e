#include "examples/custom_model/spiral_net.h"

#include <cmath>
#include <random>

#include "graph/ops/ops.h"

namespace strata::examples {

using graph::Init;
using graph::Var;
namespace nn = graph::nn;
namespace ops = graph::ops;

ResidualBlock::ResidualBlock(int64_t width)
    : norm_(Add<nn::LayerNorm>("norm", width)),
      up_(Add<nn::Linear>("up", width, 4 * width)),
      down_(Add<nn::Linear>("down", 4 * width, width)) {
  // Start each block as the identity: the residual branch's last layer begins at zero.
  down_->weight()->set_init(Init::Zeros());
}

Var ResidualBlock::Forward(Var x) {
  Var h = (*up_)((*norm_)(x));
  TraceScope scope(*this, x);  // names the nodes below after this module in --dump-graph
  return ops::Add(x, (*down_)(ops::Gelu(h)));
}

SpiralNet::SpiralNet(int64_t width, int blocks) {
  embed_ = Add<nn::Linear>("embed", 2, width);
  auto* body = Add<nn::Sequential>("body");
  for (int i = 0; i < blocks; ++i) body->Append<ResidualBlock>(width);
  body_ = body;
  head_ = Add<nn::Linear>("head", width, 3);
}

Var SpiralNet::Forward(Var x) { return (*head_)((*body_)((*embed_)(x))); }

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

graph::TrainOptions SpiralTrainOptions(int64_t steps) {
  graph::TrainOptions o;
  o.optimizer = graph::OptimizerOptions::AdamW(0.9, 0.999, 1e-8, 1e-4);
  o.schedule = {.kind = optim::LrSchedule::kCosine, .max_lr = 1e-2, .min_lr = 1e-3,
                .warmup_steps = 20, .total_steps = steps};
  return o;
}

absl::StatusOr<std::unique_ptr<graph::Program>> CompileSpiralNet(SpiralNet& net, int64_t batch,
                                                                  const graph::TrainOptions& o) {
  return graph::Compile(
      net, {{"points", Shape{batch, 2}, DType::kF32}, {"labels", Shape{batch}, DType::kI32}},
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(net(in[0]), in[1]); }, o);
}

}  // namespace strata::examples
