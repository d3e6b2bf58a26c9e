// An Op is one kind of IR node: how its output types follow from its inputs, how it runs (by
// calling a runtime kernel), and how its input gradients are written as more IR. Each op is one
// small struct (graph/ops/), so adding an op is one struct, one OpKind and one builder function.
//
//   class GeluOp final : public Op {
//     OpKind kind() const override { return OpKind::kGelu; }    // what passes match on
//     absl::StatusOr<std::vector<TensorType>> Infer(absl::Span<const TensorType> in) const override;
//     absl::Status Run(const RunArgs& args) const override;   // cpu::GeluForward(in[0], out[0])
//     absl::Status Gradient(GradientArgs& args) const override;  // dx = gelu_grad(x, dy)
//   };
//
// name() is OpKindName(kind()) unless an op overrides it; it is for dumps and errors only.
//
// Lifecycle: Infer at trace time; WorkspaceBytes when memory is planned; Run every step with
// tensors bound once by the Program (Run must not allocate); Gradient once, by autodiff.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "graph/ir.h"
#include "graph/op_kind.h"
#include "runtime/device.h"
#include "runtime/tensor.h"

struct CUstream_st;
namespace strata::cuda {
class CublasHandle;
}  // namespace strata::cuda

namespace strata::graph {

class Tracer;

// Per-step scalars an op may read at run time, so that a schedule never rebuilds the program.
struct StepScalars {
  int64_t step = 1;  // optimizer step, counting from 1 as PyTorch's optimizers do
  double lr = 0.0;   // this step's learning rate, from the schedule
  // True in Program::Step, false in Program::Evaluate: BatchNorm normalizes with the batch's
  // statistics and updates its running ones only when training; Dropout drops only then.
  bool training = true;
  // For random ops (Note [dropout masks from a counter] in runtime/cpu/dropout.h): the run's seed
  // (TrainOptions::seed), and which micro-batch of the step's global batch runs now, counted over
  // the ranks: i * world + rank for this rank's micro-batch i, whose rows are the rank-th block
  // of the global micro-batch i. Every piece has the same rows, so its first element's index in
  // the global batch is micro_batch * (its elements).
  uint64_t seed = 0;
  int64_t micro_batch = 0;
  // Dynamic loss scaling (Note [mixed precision] in graph/passes/mixed_precision.cc): the factor
  // this step's loss and gradients carry, which the updates divide out; 1 without scaling.
  float loss_scale = 1.0f;
};

// Where a compiled step runs (TrainOptions::device), for what an op plans by it: its workspace.
struct StepTarget {
  Device device = Device::Cpu();
  int num_threads = 1;  // CPU kernels' threads
};

// The CUDA stream a step's kernels are enqueued on, in node order, and the cuBLAS handle bound
// to it (Note [the step on a device] in graph/program.cc).
struct CudaContext {
  CUstream_st* stream = nullptr;  // a cudaStream_t
  cuda::CublasHandle* blas = nullptr;
  // Every float input of the node holds bf16 values (Note [mixed precision]): its GEMMs run on
  // bf16 tensor cores, exactly (cuda::GemmPrecision::kBf16).
  bool bf16_operands = false;
};

struct RunArgs {
  absl::Span<const Tensor> in;
  absl::Span<const Tensor> out;  // undefined where the output was not wanted
  absl::Span<float> workspace;   // in the step's memory: on the device with `cuda`
  const StepScalars* scalars = nullptr;
  // Null on the CPU. Otherwise every tensor is in that device's memory and Run enqueues its
  // kernels on cuda->stream (graph/ops/internal/kernel.h), reading nothing back.
  const CudaContext* cuda = nullptr;
  // The workspace as a tensor (f32, contiguous), for the CUDA launchers that take one.
  Tensor workspace_tensor = Tensor();
};

// What autodiff gives an op's Gradient: the node's values, the gradient of each output (kNoValue
// where nothing downstream needs it) and which inputs need a gradient. Gradient fills
// `input_grads` (one per input, kNoValue where it gives none) by tracing more IR.
struct GradientArgs {
  Tracer& tracer;
  const Node& node;
  std::vector<ValueId> output_grads;
  std::vector<bool> needs_grad;
  std::vector<ValueId> input_grads;
};

class Op {
 public:
  virtual ~Op() = default;
  virtual OpKind kind() const = 0;
  // For dumps and errors; passes match kind(), never the name (graph/op_kind.h).
  virtual std::string name() const { return std::string(OpKindName(kind())); }
  // Attributes for dumps, e.g. "heads=6" (empty when there are none).
  virtual std::string Attributes() const { return ""; }
  // Output types; an error names the op and the offending input shape.
  virtual absl::StatusOr<std::vector<TensorType>> Infer(
      absl::Span<const TensorType> in) const = 0;
  virtual size_t WorkspaceBytes(absl::Span<const TensorType> in, const StepTarget& target) const {
    return 0;
  }
  virtual absl::Status Run(const RunArgs& args) const = 0;
  // True when Run also runs on a CUDA device (RunArgs::cuda); a program for a device refuses,
  // naming them, the ops where it is false.
  virtual bool HasCudaKernel() const { return false; }
  virtual absl::Status Gradient(GradientArgs& args) const;  // default: not differentiable
  // Inputs that Run writes in place (an optimizer update writes its parameter and state).
  virtual std::vector<int> MutatedInputs() const { return {}; }
  // (output, input) pairs, in order of preference: the output may take over the input's bytes
  // where this node is the input's last reader (Note [in-place outputs] in
  // graph/passes/memory_plan.cc), so Run must read whatever it needs of the input before writing
  // the output over it (an elementwise op; a linear gradient that computes dw before dx).
  virtual std::vector<std::pair<int, int>> InPlaceOutputs() const { return {}; }
  // Outputs that hold per-row or per-channel statistics a backward reads (mean, 1/std,
  // log-sum-exp, sums for a synchronized batch norm): a mixed-precision step keeps them f32, as
  // fused low-precision kernels do (Note [mixed precision] in graph/passes/mixed_precision.cc).
  virtual std::vector<int> StatisticsOutputs() const { return {}; }
  // True when Run writes its MutatedInputs only while StepScalars::training is set (BatchNorm's
  // running statistics), so that Program::Evaluate may run it.
  virtual bool MutatesOnlyWhenTraining() const { return false; }
  // True for the nodes that move bytes between tiers (fetch, write-back), for updates over
  // offloaded state and for collectives: the Program runs them on a side stream (StreamOf in
  // graph/passes/passes.h), overlapped with compute (Note [the IO stream] in program.cc), and
  // reads their operands at their home tiers.
  virtual bool RunsOnSideStream() const { return false; }
  // The op a recomputed copy of this node runs (graph/passes/recompute.cc): the same outputs
  // from the same inputs, bit for bit, writing nothing in place (BatchNorm without its running
  // statistics update). nullptr: the op itself, when it writes nothing in place; a node whose op
  // writes in place and gives no such variant is never recomputed (its outputs are kept).
  virtual std::shared_ptr<const Op> RecomputeOp() const { return nullptr; }
};

}  // namespace strata::graph
