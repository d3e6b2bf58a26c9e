// A compiled training step (DESIGN.md, "Program / executor"): every value has its bytes planned
// before the first step, every node is bound to its tensors once, and step() only runs kernels.
//
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Program> p, Compile(model, inputs, loss, options));
//   std::cout << p->memory_report().ToString();         // planned peak per tier, before a step
//   STRATA_ASSIGN_OR_RETURN(StepStats s, p->Step({ids, targets}));
//   s.loss, s.step_ms, s.tokens_per_s, s.peak_bytes[MemoryTier::kDevice]
//
// Lifecycle: Compile (trace, autodiff, passes, plan) -> Program::Create (allocate the two regions,
// initialize parameters and constants, bind tensors) -> Step, Step, ... No heap allocation
// happens inside Step after the first one, but for a data-parallel program's collectives (the
// communicator's per-call bookkeeping, collectives/communicator.h).
//
// Measured memory (StepStats::peak_bytes) is the high-water mark of the bytes that the
// program's allocators handed out during the step, per tier, never a number taken from the plan.
// With Config::check_plan (TrainOptions::check_plan) every arena value gets its own allocation
// for its live interval only, so that the plan is checked rather than trusted
// (Note [checking the plan] in program.cc).
#pragma once

#include <array>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "collectives/communicator.h"
#include "graph/streams.h"
#include "graph/ir.h"
#include "graph/offload_options.h"
#include "graph/op.h"
#include "graph/passes/passes.h"
#include "graph/tier_store.h"
#include "graph/zero_options.h"
#include "optim/loss_scale.h"
#include "optim/lr_schedule.h"
#include "runtime/allocator.h"
#include "runtime/memory_ledger.h"
#include "runtime/tensor.h"

namespace strata::graph {

using TierBytes = std::array<int64_t, kNumMemoryTiers>;

struct MemoryReport {
  // Per tier, indexed by MemoryTier. device: persistent + arena bytes, or with check_plan (one
  // allocation per live arena value) persistent + the largest live set; host: the host region
  // + staging buffers; nvme: the swap-file extents.
  TierBytes planned_peak{};
  TierBytes budget{};            // 0 where there is none
  int64_t persistent_bytes = 0;  // on the device: parameters, optimizer state, inputs, outputs
  int64_t arena_bytes = 0;       // activations, gradients, staged copies, workspaces
  int64_t live_peak_bytes = 0;   // the largest sum of simultaneously live arena values
  int64_t host_bytes = 0;        // state homed on the host
  int64_t staging_bytes = 0;     // pinned buffers that transfers to and from NVMe go through
  int64_t nvme_bytes = 0;        // state homed on NVMe
  int64_t prefetch_bytes = 0;    // the lookahead the schedule was built with
  std::string io;                // the NVMe engine, when there is one
  // One line per tier: "device  123.4 MiB planned (budget 512.0 MiB): 10.0 MiB persistent, ...".
  std::string ToString() const;
};

struct StepStats {
  int64_t step = 0;  // optimizer steps done, this one included (unless skipped)
  double loss = 0;   // mean over the micro-batches
  double lr = 0;
  double grad_norm = -1;  // before clipping (unscaled); -1 when neither clipping nor loss
                          // scaling computes it; inf or NaN on a step skipped for overflow
  // Dynamic loss scaling (Note [mixed precision] in graph/passes/mixed_precision.cc): the scale
  // this step's loss was multiplied by (1 without scaling), and whether its gradients overflowed
  // so that no parameter changed and `step` did not advance.
  double loss_scale = 1;
  bool skipped = false;
  double step_ms = 0;
  double samples_per_s = 0;
  double tokens_per_s = 0;  // samples times the second dimension of the first input (sequence)
  TierBytes peak_bytes{};   // measured: the allocators' high-water during the step, per tier
  double io_wait_ms = 0;    // time the compute stream waited for IO (fetches, write-backs)
  TierBytes io_read_bytes{};   // bytes fetched from each tier (host, nvme) during the step
  TierBytes io_write_bytes{};  // bytes written back to each tier during the step
  int64_t comm_bytes = 0;      // bytes this rank sent in the step's collectives, as the
                               // communicator counts them (collectives/communicator.h)
  int world_size = 1;
};

struct InputSpec {
  std::string name;
  Shape shape;  // of one micro-batch
  DType dtype = DType::kF32;
};

class Program {
 public:
  struct Config {
    std::vector<InputSpec> inputs;
    std::vector<ValueId> input_values;
    ValueId loss = kNoValue;
    ValueId grad_norm = kNoValue;  // kNoValue when neither clipping nor loss scaling is on
    // Dynamic loss scaling (Note [mixed precision]): the backward's seed constant, rewritten
    // before each step as loss_seed_value times the scale; the updates read StepScalars::loss_scale
    // and skip when grad_norm is not finite.
    bool loss_scaling = false;
    optim::LossScaleOptions loss_scale;
    ValueId loss_seed = kNoValue;
    float loss_seed_value = 1.0f;
    int micro_batches = 1;
    optim::LrSchedule schedule;
    // Parameter path -> (value, initializer); the initializer is drawn at Create.
    struct Param {
      std::string path;
      ValueId value;
      int init_kind;
      double a, b;
      bool trainable;
    };
    std::vector<Param> params;
    // Optimizer state values, named "<path>.<slot>" (exp_avg, exp_avg_sq, momentum_buffer).
    std::vector<std::pair<std::string, ValueId>> optimizer_state;
    std::vector<std::pair<std::string, ValueId>> gradients;  // with TrainOptions::keep_gradients
    uint64_t seed = 0;
    int num_threads = 1;
    std::string dump;  // the IR after each pass, when asked for
    // Each arena value in its own allocation for its live interval only, checked against the
    // plan at every node (Note [checking the plan] in program.cc). Slower; Step allocates.
    bool check_plan = false;
    OffloadOptions offload;  // home tiers, budgets and the NVMe engine
    // Data parallel (TrainOptions::communicator): runs the all_reduce nodes and averages the
    // reported losses over the ranks. Not owned.
    collectives::Communicator* communicator = nullptr;
    ZeroOptions zero;  // how the state is partitioned over the ranks
    // Where the step runs (TrainOptions::device; Note [the step on a device] in program.cc).
    Device device = Device::Cpu();
  };

  static absl::StatusOr<std::unique_ptr<Program>> Create(Graph graph, MemoryPlan plan,
                                                         Config config);
  ~Program();

  // One optimizer step: `batch` holds one tensor per input, each with micro_batches times the
  // compiled leading dimension; micro-batch i is rows [i * b, (i + 1) * b). Errors name the input.
  absl::StatusOr<StepStats> Step(absl::Span<const Tensor> batch);
  // The loss on `batch` without changing anything (same shapes as Step); for held-out loss.
  absl::StatusOr<double> Evaluate(absl::Span<const Tensor> batch);
  // Runs the optimizer updates that the last Step left in flight (Note [deferred updates] in
  // graph/passes/defer_updates.cc: updates that write only NVMe-homed state may finish inside the
  // next Step, overlapped with its forward). ReadState, WriteState and Evaluate call it first, so
  // callers need it only to time the state's last writes; a no-op when nothing is pending.
  absl::Status Flush();

  MemoryReport memory_report() const;
  const Graph& graph() const { return graph_; }
  const MemoryPlan& plan() const { return plan_; }
  // The IR after each pass (filled when Compile was asked to dump).
  const std::string& dump() const { return config_.dump; }

  // Named state, for checkpoints and weight files. Parameters and buffers by model path. A value
  // homed on NVMe has no bytes in memory: its tensor here is undefined; read and write it with
  // ReadState / WriteState, which work for every home.
  const std::vector<std::pair<std::string, Tensor>>& parameters() const { return named_params_; }
  const std::vector<std::pair<std::string, Tensor>>& optimizer_state() const {
    return named_state_;
  }
  // The values behind parameters() and optimizer_state(), in the same order.
  const std::vector<std::pair<std::string, ValueId>>& parameter_values() const {
    return param_values_;
  }
  const std::vector<std::pair<std::string, ValueId>>& optimizer_state_values() const {
    return state_values_;
  }
  absl::StatusOr<Tensor> parameter(const std::string& path) const;
  int64_t num_parameters() const;  // elements of every parameter and buffer
  // A persistent value's bytes, wherever it lives: a host copy made with `allocator`, and back.
  // A ZeRO shard (Value::shard: optimizer state at stages 1-3, parameters at stage 3) is the 1-D
  // tensor of this rank's elements; graph().value(id).shard says which. WriteState of a shard
  // also takes the whole tensor and keeps this rank's elements of it (loading whole weights).
  absl::StatusOr<Tensor> ReadState(ValueId id, Allocator& allocator) const;
  absl::Status WriteState(ValueId id, const Tensor& src);
  // On a CUDA device (Config::device) every tensor here (parameters(), optimizer_state(),
  // gradients(), value()) is in device memory: read and write state through ReadState and
  // WriteState, which copy.
  // The tensor bound to value `id`, as the last Step or Evaluate left it (Evaluate computes only
  // what the loss depends on). Only persistent values keep their bytes (parameters, inputs,
  // outputs: mark a traced value with Tracer::MarkOutput to read it here); an arena value's
  // bytes are reused within the step (with check_plan, freed after its last use). NotFound when
  // `id` is out of range or the program has no bytes for it now (dead code, or a freed value).
  absl::StatusOr<Tensor> value(ValueId id) const;
  // Parameter path -> its gradient of the last step (empty unless compiled with keep_gradients;
  // with micro-batches, the accumulated sum, zeroed after the update).
  const std::vector<std::pair<std::string, Tensor>>& gradients() const { return named_grads_; }
  int64_t step_count() const { return step_count_; }
  // Dynamic loss scaling: the scaler as the last step left it (null without loss scaling), and
  // its state set back from a checkpoint (errors name the field, the program is then unchanged).
  const optim::LossScaler* loss_scaler() const { return scaler_ ? &*scaler_ : nullptr; }
  absl::Status RestoreLossScale(double scale, int64_t good_steps);
  // Per-op time: while enabled, each step adds every node's run time to its op's row.
  void set_profiling(bool on) { profiling_ = on; }
  // "op  ms/step  share" rows, slowest first, averaged over the profiled steps.
  std::string ProfileReport() const;
  void set_step_count(int64_t s) { step_count_ = s; }
  const optim::LrSchedule& schedule() const { return config_.schedule; }
  // The data-parallel communicator (Config::communicator), null without one. Collective
  // callers (SaveCheckpoint, GatherState) use it between steps, in the same order on every rank.
  collectives::Communicator* communicator() const { return config_.communicator; }

 private:
  struct Instruction {
    const Op* op;
    std::vector<Tensor> in, out;
    absl::Span<float> workspace;
    Phase phase;
    const Node* node;
    // Note [mixed precision]: the slots of `out`, and of `in` that the node writes in place (an
    // all_reduce's gradients), holding values stored in the working precision, with it.
    std::vector<std::pair<int, DType>> rounded_out, rounded_in;
    Tensor workspace_tensor = Tensor();  // `workspace` as a tensor, for the CUDA launchers
    bool bf16_operands = false;          // CudaContext::bf16_operands
  };
  Program(Graph graph, MemoryPlan plan, Config config);
  absl::Status Bind();
  // Note [the step on a device]: the CUDA stream, cuBLAS handle and device allocators.
  absl::Status CreateDeviceContext();
  // Host <-> step memory (either way); `dst` and `src` contiguous, of one shape and dtype.
  absl::Status Copy(const Tensor& dst, const Tensor& src) const;
  // The first f32 of `t` (the loss, the global norm), after the step's work before it.
  absl::StatusOr<float> ReadFloat(const Tensor& t) const;
  // Waits for the device (a no-op on the CPU).
  absl::Status SynchronizeDevice() const;
  // On a device: the store's host memory registered with CUDA, its transfers on the copy queue.
  absl::Status ConnectStoreToDevice();
  // A side-stream node's transfer between host memory and the step's (the device's on a GPU:
  // asynchronous on the copy queue, done once RunIo returns).
  absl::Status MoveBytes(void* dst, const void* src, int64_t bytes);
  const CudaContext* cuda() const { return device_ != nullptr ? &cuda_ : nullptr; }
  const CudaContext* cuda(const Instruction& ins) const {
    return device_ == nullptr ? nullptr : ins.bf16_operands ? &cuda_bf16_ : &cuda_;
  }

  absl::Status BindShardedUpdate(const Node& n, Instruction& ins);
  absl::Status InitializeParameters();
  absl::Status CheckBatch(absl::Span<const Tensor> batch) const;
  absl::Status LoadMicroBatch(absl::Span<const Tensor> batch, int index);
  absl::Status Run(const Instruction& ins);
  absl::Status RunIo(const Instruction& ins);
  absl::Status RunIoNode(const Instruction& ins);  // RunIo's work, without the device's ordering
  absl::Status RunOffloadedUpdate(const Instruction& ins);
  // Runs `collective` over `tensors` in memory the communicator reads: themselves, or on a
  // device with a host communicator, host copies that are rounded to `precision` (per tensor;
  // kF32: not rounded; empty: none is) and copied back (Note [the step on a device]).
  absl::Status OnCommunicatorMemory(
      absl::Span<const Tensor> tensors, absl::Span<const DType> precision,
      absl::FunctionRef<absl::Status(absl::Span<const Tensor>)> collective);
  // ZeRO: `whole` (contiguous) filled in place with every rank's shard; this rank's is `mine`.
  absl::Status Gather(const Tensor& whole, const collectives::ShardRange& mine);
  // Data parallel: `local` summed over the ranks (itself in a world of one).
  absl::StatusOr<double> SumOverRanks(double local);
  // Data parallel: every rank must run the same program (Note [same program on every rank]).
  absl::Status CheckSameProgramOnEveryRank();
  absl::Status PlanStreams();
  absl::Status RunPhase(Phase phase, bool all);
  absl::Status RunSequence(const Streams::Sequence& seq);
  absl::Status RunMicroBatches(absl::Span<const Tensor> batch, double* loss_sum);
  // StepScalars::micro_batch of this rank's micro-batch i: i * world + rank (Note [dropout in
  // the step] in graph/ops/dropout_ops.cc).
  int64_t GlobalMicroBatch(int i) const;
  // check_plan: Run with the node's arena values allocated, checked and released around it.
  absl::Status RunChecked(int index);
  absl::Status Allocate(ValueId v, int index);
  absl::Status AllocateBlock(ValueId v, int index);
  void Release(ValueId v);
  int ReleaseAll();  // the number of arena values that were still live
  std::string Describe(ValueId v) const;
  std::string DescribeNode(int index) const;

  Graph graph_;
  MemoryPlan plan_;
  Config config_;
  MemoryLedger ledger_;  // per tier, what both allocators hand out
  std::unique_ptr<Allocator> persistent_allocator_, arena_allocator_;
  // Note [the step on a device]: its CUDA stream and cuBLAS handle (program.cc), and the
  // context the nodes get (cuda_, pointing into it); null on the CPU.
  struct DeviceState;
  std::unique_ptr<DeviceState> device_;
  CudaContext cuda_, cuda_bf16_;   // cuda_bf16_: the same, with bf16_operands
  Allocation persistent_, arena_;  // arena_ stays empty with check_plan
  // check_plan: per value, its own block while live; per node, the arena values whose planned
  // interval starts / ends there; planned offset -> live value, to check that no two overlap.
  std::vector<Allocation> blocks_;
  std::vector<bool> live_;
  std::vector<std::vector<ValueId>> born_at_, dead_after_;
  std::map<int64_t, ValueId> live_extents_;
  std::vector<Tensor> tensors_;  // per value
  std::vector<Instruction> instructions_;
  std::vector<std::pair<std::string, Tensor>> named_params_, named_state_, named_grads_;
  StepScalars scalars_;
  std::optional<optim::LossScaler> scaler_;  // with Config::loss_scaling
  int64_t step_count_ = 0;
  bool has_update_phase_ = false;
  bool profiling_ = false;
  int64_t profiled_steps_ = 0;
  std::vector<double> node_ms_;  // per instruction, summed over profiled steps
  // Homes off the device (Note [home tiers]): per value, its swap-file extent when on NVMe.
  std::unique_ptr<TierStore> store_;
  std::vector<offload::Extent> extents_;
  std::vector<std::pair<std::string, ValueId>> param_values_, state_values_;
  // Note [the IO stream]: the instruction sequences of a step and the streams that run them.
  Streams::Sequence all_, micro_, update_;
  // Note [deferred updates]: the last sequence's trailing updates (tail_), left pending by one
  // step and run inside the next step's first sequence (steady_), or alone by Flush; with the
  // scalars and global norm of the step they belong to.
  Streams::Sequence tail_, steady_;
  std::vector<bool> deferred_;  // per instruction
  // Note [handing the parameter over]: per deferred update, the fetch and the fetch's input that
  // it hands the new parameter in the steady sequence (or -1); per fetch, a bit per input that
  // this run's updates already handed.
  std::vector<int> hands_to_, hands_input_;
  std::vector<uint64_t> handed_;
  bool running_steady_ = false;
  bool pending_ = false;
  StepScalars deferred_scalars_;
  float deferred_norm_ = 0;
  std::function<absl::Status(int)> run_instruction_;
  double io_wait_ms_ = 0;
  float norm_scratch_[16] = {};  // an offloaded update's copy of the global norm
  Tensor loss_sum_;               // data parallel: the step's loss, summed over the ranks
  std::unique_ptr<Streams> streams_;  // last: its workers stop before the rest goes
};

// The memory a planned step needs per tier (Program::memory_report without the NVMe engine's
// description): for comparing plans before allocating any of them.
MemoryReport ReportPlannedMemory(const Graph& graph, const MemoryPlan& plan,
                                 const Program::Config& config);

}  // namespace strata::graph
