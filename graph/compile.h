// compile(model, inputs, loss, options): the whole training step — forward, loss, backward,
// optimizer — derived once into a Program (DESIGN.md, "The compile pipeline").
//
//   Gpt gpt(config);
//   TrainOptions o;
//   o.optimizer = OptimizerOptions::AdamW(/*beta1=*/0.9, /*beta2=*/0.95, /*eps=*/1e-8, /*wd=*/0.1);
//   o.schedule = {.kind = optim::LrSchedule::kCosine, .max_lr = 6e-4, .warmup_steps = 100,
//                 .total_steps = 5000};
//   o.clip_grad_norm = 1.0;
//   auto program = Compile(gpt, {{"ids", Shape{8, 256}, DType::kI32},
//                                {"targets", Shape{8, 256}, DType::kI32}},
//                          [&](absl::Span<const Var> in) {
//                            return ops::CrossEntropy(gpt.Forward(in[0]), in[1]);
//                          }, o);
//
// Steps: trace the loss function once on symbolic inputs; autodiff for every trainable
// parameter; gradient accumulation, clipping and one update node per parameter; then the passes
// (graph/passes/passes.h) and the memory plan; then Program::Create allocates and initializes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/module.h"
#include "graph/offload_options.h"
#include "graph/param_groups.h"
#include "graph/program.h"
#include "graph/zero_options.h"
#include "optim/loss_scale.h"
#include "optim/lr_schedule.h"

namespace strata::graph {

struct OptimizerOptions {
  enum Kind { kAdamW, kSgd };
  Kind kind = kAdamW;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // AdamW
  double momentum = 0.0, dampening = 0.0;         // SGD
  bool nesterov = false;                          // SGD
  double weight_decay = 0.0;
  // Which parameters get the default weight decay. Default as nanoGPT: tensors with two or more
  // dimensions (weights, embeddings) decay, biases and norms do not.
  std::function<bool(const std::string& path, const Shape& shape)> decays =
      [](const std::string&, const Shape& s) { return s.rank() >= 2; };
  // Parameter groups by path pattern, the first match taking a parameter: a learning-rate scale
  // and a weight decay of their own (Note [parameter groups] in graph/param_groups.h). Empty:
  // every parameter has the defaults above and the schedule's lr.
  std::vector<ParamGroup> groups;

  static OptimizerOptions AdamW(double beta1, double beta2, double eps, double weight_decay);
  static OptimizerOptions Sgd(double momentum, double weight_decay, bool nesterov = false);
  absl::Status Validate() const;
};

struct TrainOptions {
  OptimizerOptions optimizer;
  optim::LrSchedule schedule;  // the learning rate of each step
  int micro_batches = 1;       // gradient accumulation: inputs are given for one micro-batch
  double clip_grad_norm = 0;   // > 0: clip the global gradient norm to this
  uint64_t seed = 0;           // parameter initialization and dropout masks (Note [dropout
                               // in the step] in graph/ops/dropout_ops.cc)
  bool dump_graph = false;     // keep the IR after each pass in Program::dump()
  bool keep_gradients = false; // keep each parameter's final gradient readable after a step
                               // (Program::gradients()), at the cost of persistent bytes
  bool check_plan = false;     // check the memory plan while running: each arena value in its
                               // own allocation, live only over its planned interval
                               // (Program::Config::check_plan); slower, same losses
  // Activation checkpointing: keep only each block's input through the forward and recompute
  // the block's activations in the backward (same losses, less arena).
  bool recompute = false;
  OffloadOptions offload;      // home tier per class of state, budgets, NVMe engine
  // Mixed precision (Note [mixed precision] in graph/passes/mixed_precision.cc): kF32, or kBF16 /
  // kF16 for working copies of the parameters and activations stored in that precision, with
  // f32 master weights and optimizer state.
  DType precision = DType::kF32;
  // Dynamic loss scaling (optim/loss_scale.h): kAuto scales with f16 only (bf16 has f32's range).
  enum class LossScaling { kAuto, kDynamic, kOff };
  LossScaling loss_scaling = LossScaling::kAuto;
  optim::LossScaleOptions loss_scale;  // when it scales
  bool scales_loss() const {
    return loss_scaling == LossScaling::kDynamic ||
           (loss_scaling == LossScaling::kAuto && precision == DType::kF16);
  }
  // Data parallel (Note [data parallel] in compile.cc): with a communicator of more than one
  // rank, each rank runs the step on its rows of the global batch (inputs are given per rank)
  // and the gradients are summed over the ranks before clipping and the updates. Not owned; it
  // must outlive the Program. Null: one process.
  collectives::Communicator* communicator = nullptr;
  // ZeRO stages 1-3 with that communicator (Note [zero partition] in
  // graph/passes/zero_partition.cc); ignored in a world of one.
  ZeroOptions zero;
  // Where the step runs: the CPU, or a CUDA device (Note [the step on a device] in
  // graph/program.cc), where every piece of state lives in its memory. Compiling for a device
  // fails, naming what, for what the device path does not run yet: offload, a communicator,
  // check_plan, and ops without a CUDA kernel.
  Device device = Device::Cpu();
};

using LossFn = std::function<Var(absl::Span<const Var> inputs)>;

absl::StatusOr<std::unique_ptr<Program>> Compile(Module& model,
                                                 const std::vector<InputSpec>& inputs,
                                                 const LossFn& loss, const TrainOptions& options);

// The first half of Compile: the traced step with its backward and optimizer nodes, before any
// pass or memory plan, and the Config that Program::Create takes with them. For running the
// passes one at a time (tests, tools); Compile is this, then the passes, then PlanMemory.
struct TrainingGraph {
  Graph graph;
  Program::Config config;
};
absl::StatusOr<TrainingGraph> TraceTrainingStep(Module& model, const std::vector<InputSpec>& inputs,
                                                const LossFn& loss, const TrainOptions& options);

// Compile without Program::Create: the step after every pass and its memory plan, nothing
// allocated. ReportPlannedMemory(step.graph, step.plan, step.config) says what it would take, so
// that two plans (a sparse update against full training) can be compared before either runs.
struct PlannedStep {
  Graph graph;
  MemoryPlan plan;
  Program::Config config;
};
absl::StatusOr<PlannedStep> PlanTrainingStep(Module& model, const std::vector<InputSpec>& inputs,
                                             const LossFn& loss, const TrainOptions& options);

}  // namespace strata::graph
