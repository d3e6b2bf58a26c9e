// The custom-model example's network and task, shared by strata-custom-model and its tests: a
// residual MLP written from scratch with strata's C++ API, and three interleaved spirals (a task
// a linear model cannot solve).
//
//   SpiralNet net(/*width=*/32, /*blocks=*/3);
//   net.embed()->SetTrainable(false);                   // a frozen input layer
//   STRATA_ASSIGN_OR_RETURN(auto program, CompileSpiralNet(net, /*batch=*/96,
//                                                           SpiralTrainOptions(/*steps=*/300)));
//   Spirals(/*n=*/32, /*seed=*/0, points.data<float>(), labels.data<int32_t>());
//   STRATA_ASSIGN_OR_RETURN(graph::StepStats st, program->Step({points, labels}));
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "graph/compile.h"
#include "graph/nn/layers.h"

namespace strata::examples {

// x + W2 gelu(W1 layernorm(x)): parameters are declared once, with names and initializers; the
// forward is plain C++ over symbolic values.
class ResidualBlock : public graph::Layer {
 public:
  explicit ResidualBlock(int64_t width);
  graph::Var Forward(graph::Var x) override;

 private:
  graph::nn::LayerNorm* norm_;
  graph::nn::Linear* up_;
  graph::nn::Linear* down_;
};

// (B, 2) points -> (B, 3) logits: embed, `blocks` residual blocks, head.
class SpiralNet : public graph::Layer {
 public:
  SpiralNet(int64_t width, int blocks);
  graph::Var Forward(graph::Var x) override;
  graph::nn::Linear* embed() const { return embed_; }

 private:
  graph::nn::Linear* embed_;
  graph::Layer* body_;
  graph::nn::Linear* head_;
};

// n points per class on three spiral arms, with noise: xy is (3n, 2), label is (3n).
void Spirals(int64_t n, uint64_t seed, float* xy, int32_t* label);

// AdamW with a cosine schedule over `steps`.
graph::TrainOptions SpiralTrainOptions(int64_t steps);

// Cross-entropy of the net's logits on (batch, 2) f32 points and (batch) i32 labels.
absl::StatusOr<std::unique_ptr<graph::Program>> CompileSpiralNet(SpiralNet& net, int64_t batch,
                                                                  const graph::TrainOptions& o);

}  // namespace strata::examples
