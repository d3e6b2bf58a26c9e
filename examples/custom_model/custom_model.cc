// A model written from scratch with strata's C++ API: a custom residual block and a module tree
// (spiral_net.h), a frozen input layer, and a compiled training step. Classifies points of three
// interleaved spirals (a task a linear model cannot solve).
//
//   build/release/bin/strata-custom-model [--steps 300] [--dump-graph] [--check-plan]
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "examples/common/flags.h"
#include "examples/custom_model/spiral_net.h"
#include "graph/compile.h"
#include "runtime/status.h"

namespace strata::examples {
namespace {

absl::Status Main(int64_t steps, bool dump, bool check_plan) {
  constexpr int64_t kBatch = 96;
  SpiralNet net(/*width=*/32, /*blocks=*/3);
  // Freeze the input projection: no gradient, no optimizer state and no update are compiled for
  // it (see --dump-graph).
  net.embed()->SetTrainable(false);

  graph::TrainOptions o = SpiralTrainOptions(steps);
  o.dump_graph = dump;
  o.check_plan = check_plan;
  STRATA_ASSIGN_OR_RETURN(auto program, CompileSpiralNet(net, kBatch, o));
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
  bool dump = false, check_plan = false;
  strata::examples::Flags f("strata-custom-model", "Trains a custom residual MLP on three spirals.");
  f.Add("steps", &steps, {.min = 1, .max = 1000000}, "optimizer steps");
  f.Add("dump-graph", &dump, "print the IR after each compile pass");
  f.Add("check-plan", &check_plan, "check the memory plan while training (slow; same losses)");
  if (std::optional<int> code = f.ParseOrExitCode(argc, argv)) return *code;
  return f.ExitCode(strata::examples::Main(steps, dump, check_plan));
}
