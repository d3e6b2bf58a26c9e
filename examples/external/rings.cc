// A custom model trained with strata's C++ API from outside its source tree (see
// CMakeLists.txt beside it): a residual ReLU MLP that tells the points inside two rings from
// those outside, with a frozen first layer, a compiled training step, a held-out loss, and a
// checkpoint saved and loaded into a freshly compiled copy of the model.
//
//   rings [CHECKPOINT_DIR]      (default: rings-checkpoint in the working directory)
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "graph/checkpoint.h"
#include "graph/compile.h"
#include "graph/nn/layers.h"
#include "graph/ops/ops.h"
#include "runtime/status.h"

namespace {

using strata::DType;
using strata::Shape;
using strata::Tensor;
using strata::graph::Var;
namespace graph = strata::graph;
namespace nn = strata::graph::nn;
namespace ops = strata::graph::ops;

// (B, 2) points -> (B, 2) logits: a lifted input, two residual ReLU layers, a classifier.
class RingNet : public graph::Layer {
 public:
  explicit RingNet(int64_t width)
      : lift_(Add<nn::Linear>("lift", 2, width)),
        hidden1_(Add<nn::Linear>("hidden1", width, width)),
        hidden2_(Add<nn::Linear>("hidden2", width, width)),
        out_(Add<nn::Linear>("out", width, 2)) {}

  Var Forward(Var x) override {
    Var h = ops::Relu((*lift_)(x));
    h = ops::Add(h, ops::Relu((*hidden1_)(h)));
    h = ops::Add(h, ops::Relu((*hidden2_)(h)));
    return (*out_)(h);
  }
  nn::Linear* lift() const { return lift_; }

 private:
  nn::Linear *lift_, *hidden1_, *hidden2_, *out_;
};

constexpr int64_t kBatch = 128;

// Points uniform in [-1, 1]^2; label 1 between radius 0.3 and 0.6 or beyond 0.85.
void Rings(uint64_t seed, Tensor& xy, Tensor& label) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < kBatch; ++i) {
    const float x = u(rng), y = u(rng), r = std::sqrt(x * x + y * y);
    xy.data<float>()[2 * i] = x;
    xy.data<float>()[2 * i + 1] = y;
    label.data<int32_t>()[i] = (r > 0.3f && r < 0.6f) || r > 0.85f;
  }
}

absl::StatusOr<std::unique_ptr<graph::Program>> CompileRingNet(RingNet& net) {
  graph::TrainOptions o;
  o.optimizer = graph::OptimizerOptions::AdamW(0.9, 0.999, 1e-8, 1e-4);
  o.schedule = {.kind = strata::optim::LrSchedule::kCosine, .max_lr = 1e-2, .min_lr = 1e-3,
                .warmup_steps = 20, .total_steps = 400};
  return graph::Compile(
      net, {{"points", Shape{kBatch, 2}, DType::kF32}, {"labels", Shape{kBatch}, DType::kI32}},
      [&](absl::Span<const Var> in) { return ops::CrossEntropy(net(in[0]), in[1]); }, o);
}

absl::Status Main(const std::string& dir) {
  RingNet net(/*width=*/64);
  net.lift()->SetTrainable(false);  // random features: no gradient, no optimizer state
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<graph::Program> program, CompileRingNet(net));
  Tensor xy = Tensor::Empty(Shape{kBatch, 2}, DType::kF32, strata::DefaultCpuAllocator()).value();
  Tensor label = Tensor::Empty(Shape{kBatch}, DType::kI32, strata::DefaultCpuAllocator()).value();
  double first = 0;
  for (int64_t s = 0; s < 400; ++s) {
    Rings(static_cast<uint64_t>(s), xy, label);
    STRATA_ASSIGN_OR_RETURN(const graph::StepStats st, program->Step({xy, label}));
    if (s == 0) first = st.loss;
    if (st.step == 1 || st.step % 100 == 0) {
      std::printf("step %3lld | loss %.4f | %.2f ms\n", static_cast<long long>(st.step), st.loss,
                  st.step_ms);
    }
  }
  Rings(/*seed=*/1u << 30, xy, label);
  STRATA_ASSIGN_OR_RETURN(const double held_out, program->Evaluate({xy, label}));
  std::printf("held-out loss %.4f (first step %.4f)\n", held_out, first);
  if (!(held_out < 0.5 * first)) {
    return absl::InternalError("the model did not learn: held-out loss above half the first");
  }

  // Save, then load into a fresh model: the same held-out loss.
  STRATA_RETURN_IF_ERROR(graph::SaveCheckpoint(*program, graph::TrainerState{}, dir));
  RingNet fresh(/*width=*/64);
  fresh.lift()->SetTrainable(false);
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<graph::Program> reloaded, CompileRingNet(fresh));
  STRATA_ASSIGN_OR_RETURN(const graph::TrainerState state, graph::LoadCheckpoint(*reloaded, dir));
  STRATA_ASSIGN_OR_RETURN(const double again, reloaded->Evaluate({xy, label}));
  std::printf("reloaded from %s at step %lld: held-out loss %.4f\n", dir.c_str(),
              static_cast<long long>(reloaded->step_count()), again);
  if (again != held_out) return absl::InternalError("the reloaded model scores differently");
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const absl::Status s = Main(argc > 1 ? argv[1] : "rings-checkpoint");
  if (!s.ok()) {
    std::fprintf(stderr, "rings: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
