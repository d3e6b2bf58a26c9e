#include "graph/compile.h"

#include <algorithm>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "graph/autodiff.h"
#include "graph/ops/ops.h"
#include "graph/passes/passes.h"
#include "graph/tier_store.h"
#include "runtime/status.h"
#include "runtime/threading.h"

namespace strata::graph {

OptimizerOptions OptimizerOptions::AdamW(double beta1, double beta2, double eps,
                                         double weight_decay) {
  OptimizerOptions o;
  o.kind = kAdamW;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = weight_decay;
  return o;
}

OptimizerOptions OptimizerOptions::Sgd(double momentum, double weight_decay, bool nesterov) {
  OptimizerOptions o;
  o.kind = kSgd;
  o.momentum = momentum;
  o.weight_decay = weight_decay;
  o.nesterov = nesterov;
  return o;
}

absl::Status OptimizerOptions::Validate() const {
  auto bad = [](const char* field, double v, const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer: ", field, " = ", v, " ", why));
  };
  if (!(weight_decay >= 0)) return bad("weight_decay", weight_decay, "must be >= 0");
  for (size_t i = 0; i < groups.size(); ++i) {
    STRATA_RETURN_IF_ERROR(ValidateParamGroup(groups[i], static_cast<int>(i) + 1));
  }
  if (kind == kAdamW) {
    if (!(beta1 >= 0 && beta1 < 1)) return bad("beta1", beta1, "must be in [0, 1)");
    if (!(beta2 >= 0 && beta2 < 1)) return bad("beta2", beta2, "must be in [0, 1)");
    if (!(eps > 0)) return bad("eps", eps, "must be > 0");
  } else {
    if (!(momentum >= 0)) return bad("momentum", momentum, "must be >= 0");
    if (nesterov && (momentum <= 0 || dampening != 0)) {
      return bad("momentum", momentum, "must be > 0 with zero dampening for Nesterov");
    }
  }
  return absl::OkStatus();
}

namespace {

void Dump(const TrainOptions& o, std::string& out, const std::string& after, const Graph& g) {
  if (o.dump_graph) absl::StrAppend(&out, "== after ", after, " ==\n", g.ToString(), "\n");
}

std::string Bytes(int64_t b) {
  return absl::StrFormat("%.1f MiB (%d bytes)", static_cast<double>(b) / 1048576.0, b);
}

struct TierNeeds {
  int64_t device = 0, host = 0;
};

TierNeeds Needs(const Graph& graph, const MemoryPlan& plan, const OffloadOptions& o) {
  return {plan.persistent_bytes + plan.arena_bytes,
          plan.host_bytes + (TierStore::NeedsStaging(graph, plan) ? TierStore::StagingBytes(o) : 0)};
}

// Note [fitting the budgets]
// The offload schedule and the memory plan are made with the lookahead the user asked for; when
// the device tier then exceeds its budget, the lookahead shrinks (by 4x, down to 0) until it
// fits — it is a bound on what may be fetched ahead, so this changes no result, only overlap —
// and config.offload.prefetch_bytes says what was used. If even no lookahead does not fit, or
// the host tier exceeds its budget, compiling fails with the smallest budget that would work.
absl::StatusOr<MemoryPlan> ScheduleAndPlan(Graph& graph, Program::Config& config) {
  OffloadOptions& o = config.offload;
  if (o.device_bytes < 0 || o.host_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("offload: budgets must be >= 0 (device ",
                                                   o.device_bytes, ", host ", o.host_bytes, ")"));
  }
  const Graph unscheduled = graph;
  bool gathers = false;  // ZeRO stage 3: sharded parameters are fetched (gathered) like offloads
  for (ValueId v = 0; v < graph.num_values(); ++v) {
    gathers = gathers || (graph.value(v).role == ValueRole::kParameter && graph.value(v).shard);
  }
  int64_t lookahead = o.offloads() || gathers ? o.prefetch_bytes : 0;  // nothing to fetch: one plan
  while (true) {
    graph = unscheduled;
    STRATA_RETURN_IF_ERROR(
        ScheduleOffload(graph, lookahead, config.zero.reuse_bytes, config.zero.bucket_bytes));
    STRATA_ASSIGN_OR_RETURN(MemoryPlan plan,
                            PlanMemory(graph, StepTarget{config.device, config.num_threads}));
    const TierNeeds need = Needs(graph, plan, o);
    if (o.host_bytes > 0 && need.host > o.host_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "offload: the host budget of ", Bytes(o.host_bytes), " is too small: this placement "
          "needs at least ", Bytes(need.host), " of host memory (state homed on the host plus "
          "staging buffers); raise --host-budget or move state to nvme"));
    }
    if (o.device_bytes == 0 || need.device <= o.device_bytes) {
      o.prefetch_bytes = lookahead;
      return plan;
    }
    if (lookahead == 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "offload: the device budget of ", Bytes(o.device_bytes), " is too small: this model "
          "and placement need at least ", Bytes(need.device), " (", Bytes(plan.persistent_bytes),
          " of state homed on the device + ", Bytes(plan.arena_bytes), " of arena with no "
          "prefetch); raise --device-budget to at least that, or offload more "
          "(--offload-params/--offload-grads/--offload-optimizer host|nvme, --recompute)"));
    }
    lookahead /= 4;
  }
}

// The part of `param` its gradient covers: the whole, or its first trained_channels channels of
// dimension 0 or 1 (Note [partial channels]).
absl::StatusOr<ops::UpdateSlice> SliceOf(const Value& param, const TensorType& grad) {
  const Shape &p = param.type.shape, &g = grad.shape;
  if (p == g) {
    if (param.trained_channels == 0) return ops::UpdateSlice{};
    return absl::UnimplementedError(absl::StrCat(
        param.name, ": trains its first ", param.trained_channels, " channels, but an op that reads "
        "it gives a gradient over all of them (only the weights of linear and conv2d layers "
        "train part of their channels)"));
  }
  int d = 0;
  while (d < p.rank() && d < g.rank() && p[d] == g[d]) ++d;
  bool one_dim = p.rank() == g.rank() && d <= 1 && g[d] == param.trained_channels;
  for (int j = d + 1; one_dim && j < p.rank(); ++j) one_dim = p[j] == g[j];
  if (!one_dim) {
    return absl::InternalError(absl::StrCat("compile: ", param.name, " ", p.ToString(),
                                            " has a gradient of shape ", g.ToString()));
  }
  ops::UpdateSlice s{1, 1, 1};
  for (int j = 0; j < d; ++j) s.rows *= p[j];
  for (int j = d; j < p.rank(); ++j) {
    s.stride *= p[j];
    s.prefix *= g[j];
  }
  return s;
}

// "largest live set at node 55 (linear in h.5.mlp.c_proj): 84049920 B in 24 values\n  12582912 B
// %169 from node 49 (gelu in h.5.mlp) until node 58\n...", for --dump-graph: what a smaller arena
// would have to do without, largest first.
std::string LargestLiveSet(const Graph& graph, const MemoryPlan& plan) {
  // Live from the node that writes a value, or the one after for an in-place output (which
  // shares that node with the input it overwrites), to its last reader.
  auto from = [&](ValueId v) { return plan.live[v].first + (plan.alias[v] != kNoValue ? 1 : 0); };
  std::vector<int64_t> bytes(graph.nodes().size() + 1, 0);
  for (ValueId v = 0; v < graph.num_values(); ++v) {
    for (int i = from(v); plan.live[v].first >= 0 && i <= plan.live[v].second; ++i) {
      bytes[i] += static_cast<int64_t>(graph.value(v).nbytes());
    }
  }
  const int peak = static_cast<int>(std::max_element(bytes.begin(), bytes.end()) - bytes.begin());
  if (bytes[peak] == 0 || peak >= static_cast<int>(graph.nodes().size())) return "";
  const Node& at = graph.nodes()[peak];
  std::vector<std::pair<int64_t, ValueId>> live;
  for (ValueId v = 0; v < graph.num_values(); ++v) {
    if (plan.live[v].first >= 0 && from(v) <= peak && peak <= plan.live[v].second) {
      live.push_back({static_cast<int64_t>(graph.value(v).nbytes()), v});
    }
  }
  std::sort(live.rbegin(), live.rend());
  std::string out = absl::StrCat("largest live set at node ", peak, " (", at.op->name(),
                                 at.scope.empty() ? "" : " in " + at.scope, "): ", bytes[peak],
                                 " B in ", live.size(), " values\n");
  for (size_t i = 0; i < live.size() && i < 16; ++i) {
    const ValueId v = live[i].second;
    const int writer = plan.live[v].first;
    absl::StrAppend(&out, "  ", live[i].first, " B ", graph.ValueToString(v), " from node ", writer,
                    " (", graph.nodes()[writer].op->name(), " in ", graph.nodes()[writer].scope,
                    ") until node ", plan.live[v].second, "\n");
  }
  return out;
}

// What a step on a CUDA device does not run yet, refused by name before anything is traced.
absl::Status CheckDeviceOptions(const TrainOptions& o) {
  if (o.device.is_cpu() && o.communicator != nullptr && o.communicator->device().is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("train options: the communicator (", o.communicator->Describe(), ") reads ",
                     o.communicator->device().ToString(), " memory; the step runs on the CPU"));
  }
  if (o.device.is_cpu()) return absl::OkStatus();
  const std::string device = o.device.ToString();
#if !STRATA_HAVE_CUDA
  return absl::FailedPreconditionError(
      absl::StrCat("train options: device ", device,
                   ": this build has no CUDA backend (configure with the "
                   "CUDA toolkit found, -DSTRATA_CUDA=ON)"));
#else
  auto no = [&](absl::string_view what) {
    return absl::UnimplementedError(
        absl::StrCat("train options: device ", device, ": ", what, " runs on the CPU only so far"));
  };
  // Data parallel runs over a host communicator (MPI), staged through host memory.
  if (o.communicator != nullptr && o.communicator->device().is_cuda()) {
    return absl::UnimplementedError(absl::StrCat(
        "train options: device ", device, ": a communicator on ",
        o.communicator->device().ToString(), " (", o.communicator->Describe(),
        ") is not wired into the step yet; data parallel on a "
        "device runs over the MPI backend, which stages the collectives through host memory"));
  }
  if (o.check_plan) return no("check_plan");
  return absl::OkStatus();
#endif
}

// A step for a CUDA device runs every node there (Note [the step on a device] in program.cc):
// each op must have a CUDA kernel; those that do not are named, each with its count of nodes.
absl::Status CheckRunsOnDevice(const Graph& graph, const Program::Config& config) {
  if (config.device.is_cpu()) return absl::OkStatus();
  std::map<std::string, int> missing;
  for (const Node& n : graph.nodes()) {
    // The Program runs the side streams' nodes itself (fetches, write-backs, offloaded updates,
    // collectives), on its copy queue, the CPU and the communicator (Note [the step on a
    // device]).
    if (n.op->RunsOnSideStream()) continue;
    if (!n.op->HasCudaKernel()) {
      ++missing[absl::StrCat(n.op->name(), n.op->Attributes().empty() ? "" : " ",
                             n.op->Attributes())];
    }
  }
  if (missing.empty()) return absl::OkStatus();
  std::string list;
  for (const auto& [op, count] : missing) {
    absl::StrAppend(&list, list.empty() ? "" : "; ", op, " (", count,
                    count == 1 ? " node)" : " nodes)");
  }
  return absl::UnimplementedError(absl::StrCat("compile: ", config.device.ToString(),
                                               ": no CUDA kernel for ", list,
                                               "; run this step on the CPU"));
}

}  // namespace

// Note [data parallel]
// ZeRO stage 0: every rank holds the whole model and runs the whole step on its own rows of the
// global batch. The step's loss is the mean over all rows, i.e. the mean over ranks of each rank's
// mean, so each rank seeds its backward with 1 / (micro-batches * ranks) and the sum of the
// ranks' gradients (one all_reduce node per gradient, in place) is the gradient of the global
// loss; clipping and the updates then see the same bytes on every rank, so the parameters stay
// identical without ever being sent. The all_reduce nodes run on the communication stream in node order —
// the same order on every rank, as the collectives require — and ScheduleUpdates puts each right
// after its gradient is final, so it overlaps the rest of the backward; with micro-batches they
// run once per step, on the accumulators, before the update phase's norms and updates. The loss
// and held-out loss the Program reports are averaged over the ranks. Stages 1-3 then shard the
// gradients, optimizer state and parameters (Note [zero partition] in passes/zero_partition.cc).
// Random ops number the global batch's rows as if rank r's micro-batch i held the r-th block of
// the one-process run's micro-batch i (StepScalars::micro_batch), the split under which that
// micro-batch's synchronized BatchNorm statistics are also the one process's; a dropout draws the
// mask of one process when the data is split that way, as the data-parallel tests and examples
// (strata-gpt, strata-fmnist) do.
absl::StatusOr<TrainingGraph> TraceTrainingStep(Module& model,
                                                const std::vector<InputSpec>& inputs,
                                                const LossFn& loss_fn,
                                                const TrainOptions& options) {
  STRATA_RETURN_IF_ERROR(options.optimizer.Validate());
  STRATA_RETURN_IF_ERROR(options.schedule.Validate());
  STRATA_RETURN_IF_ERROR(options.zero.Validate());
  if (options.micro_batches < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("train options: micro_batches = ", options.micro_batches, " must be >= 1"));
  }
  if (!(options.clip_grad_norm >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train options: clip_grad_norm = ", options.clip_grad_norm, " must be >= 0"));
  }
  if (options.precision != DType::kF32 && options.precision != DType::kBF16 &&
      options.precision != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("train options: precision = ",
                                                   DTypeName(options.precision),
                                                   " must be f32, bf16 or f16"));
  }
  const bool scales_loss = options.scales_loss();
  if (scales_loss) STRATA_RETURN_IF_ERROR(options.loss_scale.Validate());
  STRATA_RETURN_IF_ERROR(CheckDeviceOptions(options));
  TrainingGraph r;
  Graph& graph = r.graph;
  Program::Config& config = r.config;
  Tracer tracer(graph);
  config.inputs = inputs;
  config.micro_batches = options.micro_batches;
  config.schedule = options.schedule;
  config.seed = options.seed;
  config.num_threads = NumThreads();
  config.check_plan = options.check_plan;
  config.device = options.device;
  config.loss_scaling = scales_loss;
  config.loss_scale = options.loss_scale;

  // Values for parameters, then inputs; trace.
  std::vector<ValueId> trainable;
  std::vector<Parameter*> trainable_params;
  std::vector<std::string> trainable_paths;
  model.ForEachParameter([&](const std::string& path, Parameter& p) {
    Var v = tracer.NewValue({p.shape(), DType::kF32},
                            p.is_buffer() ? ValueRole::kBuffer : ValueRole::kParameter, path);
    p.Bind(v);
    config.params.push_back({path, v.id(), static_cast<int>(p.init().kind), p.init().a,
                             p.init().b, p.trainable()});
    if (p.trainable()) {
      graph.mutable_value(v.id()).trained_channels = p.trained_channels();
      trainable.push_back(v.id());
      trainable_params.push_back(&p);
      trainable_paths.push_back(path);
    }
  });
  std::vector<Var> in_vars;
  for (const InputSpec& spec : inputs) {
    in_vars.push_back(tracer.NewValue({spec.shape, spec.dtype}, ValueRole::kInput, spec.name));
    config.input_values.push_back(in_vars.back().id());
  }
  Var loss = loss_fn(in_vars);
  STRATA_RETURN_IF_ERROR(tracer.status());
  if (!loss.valid()) return absl::InvalidArgumentError("compile: the loss function returned no value");
  graph.mutable_value(loss.id()).role = ValueRole::kOutput;
  graph.mutable_value(loss.id()).name = "loss";
  config.loss = loss.id();
  Dump(options, config.dump, "trace", graph);
  if (trainable.empty()) return absl::InvalidArgumentError("compile: no trainable parameter");

  // Backward, seeded with d total / d loss = 1 / (micro_batches * ranks): the total is the mean
  // over the micro-batches of every rank (Note [data parallel]).
  const int world = options.communicator != nullptr ? options.communicator->world_size() : 1;
  config.communicator = options.communicator;
  config.zero = options.zero;
  const bool partitions = world > 1 && options.zero.stage > 0;
  if (partitions && options.keep_gradients) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train options: keep_gradients keeps every whole gradient; ZeRO stage ",
        options.zero.stage, " keeps only this rank's shards (use stage 0)"));
  }
  if (partitions && options.zero.stage < 3 && options.offload.params == MemoryTier::kNvme) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train options: ZeRO stage ", options.zero.stage, " keeps every parameter whole on each "
        "rank, so parameters on nvme would be read whole by every rank; use stage 3 (parameters "
        "sharded, ZeRO-Infinity) or keep parameters on the device or host"));
  }
  Var seed = tracer.NewValue({Shape{}, DType::kF32}, ValueRole::kConstant, "loss_seed");
  const float seed_value = 1.0f / static_cast<float>(options.micro_batches * world);
  graph.SetConstant(seed.id(), std::string(reinterpret_cast<const char*>(&seed_value), sizeof(float)));
  config.loss_seed = seed.id();  // with loss scaling, rewritten each step (Note [mixed precision])
  config.loss_seed_value = seed_value;
  const int forward_nodes = static_cast<int>(graph.nodes().size());
  STRATA_ASSIGN_OR_RETURN(const Gradients grads, Differentiate(tracer, loss, seed, trainable));
  Dump(options, config.dump, "autodiff", graph);
  STRATA_RETURN_IF_ERROR(HoistChannelSlices(graph, forward_nodes));
  std::vector<ops::UpdateSlice> slices;
  for (size_t i = 0; i < trainable.size(); ++i) {
    STRATA_ASSIGN_OR_RETURN(
        slices.emplace_back(),
        SliceOf(graph.value(trainable[i]), graph.value(grads.of.at(trainable[i])).type));
  }
  if (world > 1) {  // Note [synchronized batch norm]
    STRATA_RETURN_IF_ERROR(SyncBatchNorm(graph, options.communicator->rank(), world));
    Dump(options, config.dump, "sync_batch_norm", graph);
  }

  // Gradient accumulation, clipping and the updates.
  std::vector<ValueId> final_grads;
  for (size_t i = 0; i < trainable.size(); ++i) {
    ValueId g = grads.of.at(trainable[i]);
    if (options.micro_batches > 1) {
      Var acc = tracer.NewValue(graph.value(g).type, ValueRole::kOptimizerState,
                                absl::StrCat(trainable_paths[i], ".grad_accumulator"));
      graph.AddNode(ops::AccumulateOp(), {acc.id(), g}, {}, trainable_paths[i]);
      g = acc.id();
    }
    final_grads.push_back(g);
  }
  if (options.keep_gradients) {
    for (size_t i = 0; i < trainable.size(); ++i) {
      Value& g = graph.mutable_value(final_grads[i]);
      if (!IsPersistent(g.role)) g.role = ValueRole::kOutput;
      config.gradients.push_back({trainable_paths[i], final_grads[i]});
    }
  }
  const size_t update_begin = graph.nodes().size();
  if (world > 1) {
    for (size_t i = 0; i < trainable.size(); ++i) {
      graph.AddNode(ops::AllReduceOp(), {final_grads[i]}, {}, trainable_paths[i]);
    }
  }
  // Loss scaling needs the norm too: it is not finite exactly when a gradient overflowed.
  ValueId global_norm = kNoValue;
  if (options.clip_grad_norm > 0 || scales_loss) {
    std::vector<ValueId> norms;
    for (size_t i = 0; i < trainable.size(); ++i) {
      norms.push_back(tracer.NewValue({Shape{}, DType::kF32}, ValueRole::kActivation,
                                      absl::StrCat(trainable_paths[i], ".grad_norm")).id());
      graph.AddNode(ops::GradNormOp(), {final_grads[i]}, {norms.back()}, trainable_paths[i]);
    }
    global_norm = tracer.NewValue({Shape{}, DType::kF32}, ValueRole::kOutput, "grad_norm").id();
    graph.AddNode(ops::GlobalGradNormOp(), norms, {global_norm});
    config.grad_norm = global_norm;
  }
  const OptimizerOptions& o = options.optimizer;
  STRATA_ASSIGN_OR_RETURN(const ParamGroupPlan groups, ResolveParamGroups(model, o));
  STRATA_CHECK(groups.params.size() == trainable.size(), "param groups: ", groups.params.size(),
               " trainable parameters, compile has ", trainable.size());
  for (size_t i = 0; i < trainable.size(); ++i) {
    const std::string& path = trainable_paths[i];
    STRATA_CHECK(groups.params[i].path == path, "param groups: ", groups.params[i].path,
                 " where compile has ", path);
    // Copies (NewValue may reallocate): the gradient's type, which the optimizer state takes
    // (only the trained channels, Note [partial channels]).
    const TensorType type = graph.value(final_grads[i]).type;
    // Baked into the update node: every path that runs it (ZeRO shards, offloaded chunks) runs
    // the same op, so each honors the group.
    const double wd = groups.params[i].weight_decay;
    const double lr_scale = groups.params[i].lr_scale;
    auto state = [&](const char* slot) {
      const ValueId v = tracer.NewValue(type, ValueRole::kOptimizerState, absl::StrCat(path, ".", slot)).id();
      config.optimizer_state.push_back({absl::StrCat(path, ".", slot), v});
      return v;
    };
    if (o.kind == OptimizerOptions::kAdamW) {
      const ValueId m = state("exp_avg"), v = state("exp_avg_sq");
      std::vector<ValueId> in = {trainable[i], final_grads[i], m, v};
      if (global_norm != kNoValue) in.push_back(global_norm);
      graph.AddNode(
          ops::AdamWUpdateOp(o.beta1, o.beta2, o.eps, wd, options.clip_grad_norm, slices[i],
                             lr_scale, scales_loss),
          in, {}, path);
    } else {
      std::vector<ValueId> in = {trainable[i], final_grads[i]};
      if (o.momentum != 0) in.push_back(state("momentum_buffer"));
      if (global_norm != kNoValue) in.push_back(global_norm);
      graph.AddNode(ops::SgdUpdateOp(o.momentum, o.dampening, o.nesterov, wd,
                                     options.clip_grad_norm, slices[i], lr_scale, scales_loss),
                    in, {}, path);
    }
    if (options.micro_batches > 1) graph.AddNode(ops::ZeroOp(), {final_grads[i]}, {}, path);
  }
  for (size_t n = update_begin; n < graph.nodes().size(); ++n) {
    graph.mutable_nodes()[n].phase = Phase::kUpdate;
  }
  for (size_t i = 0; i < trainable.size() && options.micro_batches > 1; ++i) {
    config.optimizer_state.push_back({graph.value(final_grads[i]).name, final_grads[i]});
  }
  Dump(options, config.dump, "optimizer", graph);
  if (partitions) {
    STRATA_RETURN_IF_ERROR(
        PartitionForZero(graph, options.zero, options.communicator->rank(), world));
    Dump(options, config.dump, "zero_partition", graph);
  }
  if (world > 1) {
    STRATA_RETURN_IF_ERROR(BucketAllReduces(graph, options.zero.persistence_threshold,
                                            options.zero.bucket_bytes));
    Dump(options, config.dump, "bucket_all_reduces", graph);
  }
  return r;
}

absl::StatusOr<std::unique_ptr<Program>> Compile(Module& model,
                                                 const std::vector<InputSpec>& inputs,
                                                 const LossFn& loss_fn,
                                                 const TrainOptions& options) {
  STRATA_ASSIGN_OR_RETURN(PlannedStep step, PlanTrainingStep(model, inputs, loss_fn, options));
  return Program::Create(std::move(step.graph), std::move(step.plan), std::move(step.config));
}

absl::StatusOr<PlannedStep> PlanTrainingStep(Module& model, const std::vector<InputSpec>& inputs,
                                             const LossFn& loss_fn, const TrainOptions& options) {
  STRATA_ASSIGN_OR_RETURN(TrainingGraph traced, TraceTrainingStep(model, inputs, loss_fn, options));
  Graph& graph = traced.graph;
  Program::Config& config = traced.config;
  STRATA_RETURN_IF_ERROR(FuseCrossEntropy(graph));
  Dump(options, config.dump, "fuse_cross_entropy", graph);
  STRATA_RETURN_IF_ERROR(FuseResidualAdd(graph));
  Dump(options, config.dump, "fuse_residual_add", graph);
  if (options.precision == DType::kF32) {
    STRATA_RETURN_IF_ERROR(FoldRowSumsIntoLinearGrad(graph));
    Dump(options, config.dump, "fold_row_sums", graph);
    STRATA_RETURN_IF_ERROR(SaveReluMasks(graph));
    Dump(options, config.dump, "save_relu_masks", graph);
  }
  // Recompute after the fusions, so that it copies the fused forward nodes and the backward
  // fusions still see single readers; before ScheduleUpdates, so that each update is placed after
  // the copies that read its parameter; before dead-code elimination, which then drops forward
  // nodes whose outputs only the backward read (now the copies do).
  if (options.recompute) {
    STRATA_RETURN_IF_ERROR(RecomputeActivations(graph));
    Dump(options, config.dump, "recompute_activations", graph);
  }
  // After the fusions and recompute, so that the nodes they make store their outputs in the
  // working precision too; before ScheduleUpdates, which mixes update-phase nodes into the step.
  if (options.precision != DType::kF32) {
    STRATA_RETURN_IF_ERROR(ApplyMixedPrecision(graph, options.precision, config.loss));
    Dump(options, config.dump, "mixed_precision", graph);
  }
  STRATA_RETURN_IF_ERROR(ScheduleUpdates(graph));
  Dump(options, config.dump, "schedule_updates", graph);
  STRATA_RETURN_IF_ERROR(EliminateDeadCode(graph));
  Dump(options, config.dump, "dead_code", graph);
  STRATA_RETURN_IF_ERROR(PlaceState(graph, options.offload));
  config.offload = options.offload;
  STRATA_ASSIGN_OR_RETURN(MemoryPlan plan, ScheduleAndPlan(graph, config));
  Dump(options, config.dump, "schedule_offload", graph);  // fetches: offloads and ZeRO-3 gathers
  if (options.dump_graph) {
    absl::StrAppend(&config.dump, "== memory plan ==\npersistent ", plan.persistent_bytes,
                    " B, arena ", plan.arena_bytes, " B (largest live set ", plan.live_peak_bytes,
                    " B), host ", plan.host_bytes, " B, nvme ", plan.nvme_bytes, " B, prefetch ",
                    config.offload.prefetch_bytes, " B\n", LargestLiveSet(graph, plan));
  }
  STRATA_RETURN_IF_ERROR(CheckRunsOnDevice(graph, config));
  return PlannedStep{std::move(graph), std::move(plan), std::move(config)};
}

}  // namespace strata::graph
