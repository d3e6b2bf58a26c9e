#include "graph/program.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "graph/ops/ops.h"
#include "runtime/cpu/round_to_precision.h"
#include "runtime/status.h"
#include "runtime/threading.h"
#if STRATA_HAVE_CUDA
#include "runtime/cuda/blas_handle.h"
#include "runtime/cuda/copy_queue.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/cuda/cuda_stream.h"
#include "runtime/cuda/round_to_precision.h"
#include "runtime/cuda/transfer.h"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define STRATA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRATA_ASAN 1
#endif
#endif
#ifdef STRATA_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace strata::graph {
namespace {

// A small, portable generator (SplitMix64) so that initial weights do not depend on the
// standard library's distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double Normal() {                                          // Box-Muller
    const double u = 1.0 - Uniform(), v = Uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }

 private:
  uint64_t s_;
};

uint64_t HashPath(uint64_t seed, const std::string& path) {
  uint64_t h = 1469598103934665603ull ^ seed;  // FNV-1a over the path, mixed with the seed
  for (unsigned char c : path) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The bytes the plan reserves for a value (memory_plan.cc rounds every value up to this).
int64_t PlannedBytes(const Value& v) {
  const int64_t n = static_cast<int64_t>(v.nbytes());
  return (n + kPlanAlignment - 1) / kPlanAlignment * kPlanAlignment;
}

// The shape of the bytes a value holds: its type's, or a ZeRO shard's (1-D).
Shape HeldShape(const Value& v) { return v.shard ? Shape{v.shard->count} : v.type.shape; }

// Elements [offset, offset + count) of contiguous `t`, as a 1-D view.
absl::StatusOr<Tensor> FlatRange(const Tensor& t, int64_t offset, int64_t count) {
  return Tensor::View(t.storage(), Shape{count}, {1}, t.offset() + offset, t.dtype());
}

// A signalling NaN in every f32 word of [p, p + bytes): a kernel that reads bytes no one wrote in
// this interval turns the loss into NaN.
void FillNaN(void* p, int64_t bytes) {
  std::fill_n(static_cast<uint32_t*>(p), bytes / sizeof(uint32_t), 0x7FA00000u);
}

void Poison(const void* p, int64_t bytes) {
#ifdef STRATA_ASAN
  ASAN_POISON_MEMORY_REGION(p, bytes);
#endif
}

void Unpoison(const void* p, int64_t bytes) {
#ifdef STRATA_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, bytes);
#endif
}

// Per value, whether it holds bf16 values: stored in bf16 (Value::precision), or a parameter's
// working copy rounded to it (Note [mixed precision]).
std::vector<bool> HoldsBf16(const Graph& graph) {
  std::vector<bool> holds(graph.num_values(), false);
  for (ValueId v = 0; v < graph.num_values(); ++v) {
    holds[v] = graph.value(v).precision == DType::kBF16;
  }
  for (const Node& n : graph.nodes()) {
    if (n.op->kind() == OpKind::kRoundToPrecision &&
        n.op->Attributes() == DTypeName(DType::kBF16)) {
      holds[n.outputs[0]] = true;
    }
  }
  return holds;
}

// Whether `n` reads floats, every one of them bf16 values (CudaContext::bf16_operands).
bool ReadsOnlyBf16(const Graph& graph, const Node& n, const std::vector<bool>& holds_bf16) {
  bool any = false;
  for (ValueId v : n.inputs) {
    if (graph.value(v).type.dtype != DType::kF32) continue;
    if (!holds_bf16[v]) return false;
    any = true;
  }
  return any;
}

}  // namespace

std::string MemoryReport::ToString() const {
  auto mib = [](int64_t b) { return absl::StrFormat("%.1f MiB", b / 1048576.0); };
  auto tier = [&](MemoryTier t, const std::string& parts) {
    const int i = static_cast<int>(t);
    return absl::StrFormat("  %-6s %12s planned%s: %s\n", MemoryTierName(t), mib(planned_peak[i]),
                           budget[i] > 0 ? absl::StrCat(" (budget ", mib(budget[i]), ")") : "",
                           parts);
  };
  std::string s = "memory plan per tier:\n";
  absl::StrAppend(&s, tier(MemoryTier::kDevice,
                           absl::StrCat(mib(persistent_bytes), " persistent + ", mib(arena_bytes),
                                        " arena (largest live set ", mib(live_peak_bytes), ")")));
  absl::StrAppend(&s, tier(MemoryTier::kHost, absl::StrCat(mib(host_bytes), " state + ",
                                                           mib(staging_bytes), " staging")));
  absl::StrAppend(&s, tier(MemoryTier::kNvme, absl::StrCat(mib(nvme_bytes), " state")));
  if (!io.empty()) {
    absl::StrAppend(&s, "  io     ", io, ", prefetch ", mib(prefetch_bytes), "\n");
  }
  return s;
}

Program::Program(Graph graph, MemoryPlan plan, Config config)
    : graph_(std::move(graph)), plan_(std::move(plan)), config_(std::move(config)) {
  scalars_.seed = config_.seed;
  if (config_.loss_scaling) scaler_.emplace(config_.loss_scale);
}

absl::Status Program::RestoreLossScale(double scale, int64_t good_steps) {
  if (!scaler_) {
    return absl::FailedPreconditionError("loss scale: this program does not scale its loss");
  }
  optim::LossScaler restored = *scaler_;
  STRATA_RETURN_IF_ERROR(restored.Restore(scale, good_steps));
  scaler_ = restored;
  return absl::OkStatus();
}

// Note [the step on a device]
// With Config::device a CUDA device, the step runs there as it runs on the CPU, node by node in
// the same order, on one CUDA stream: the persistent region and the arena are device memory
// (cudaMalloc, through CachingAllocators whose accounting is the device tier's, so the measured
// peaks are still the allocators'), every value is a view into them as on the CPU, and each
// node's Run enqueues its kernels on the stream from the calling thread (RunArgs::cuda,
// graph/ops/internal/kernel.h) and returns. Nothing waits for the device inside a step but
// the reads the host needs: each micro-batch's loss, the scalar a fused cross-entropy takes as
// its dloss, and with clipping or loss scaling the global norm once the step is done (the
// updates themselves read it in device memory, optim/cuda/grad_norm_cuda.h). Batches are copied
// in on the same stream before the micro-batch's first node; parameters are drawn on the host
// and copied in; ReadState and WriteState copy and wait. The same memory plan serves both: only
// the workspaces differ (Op::WorkspaceBytes takes the StepTarget).
//
// Offloaded state (ZeRO-Offload and ZeRO-Infinity on a GPU): the homes on host and NVMe, the
// offload schedule and the side streams are the CPU's (Note [the IO stream]); a side-stream node
// moves bytes between the device and the store's host memory (registered with CUDA, so the
// copies are DMA) on a copy stream of its own (runtime/cuda/copy_queue.h), and the CPU's
// optimizer updates state in host memory, chunk by chunk (TierStore::Update). The streams'
// dependencies are the CPU's, kept on the host: a side-stream node starts once compute has run
// every compute node listed before it, which on a device means *enqueued*. So the node first
// makes its copy stream wait, on the device, for everything the compute stream has been given
// so far (those nodes and maybe more: never less), and it reports itself done only once its
// copies are (the host waits for the copy stream), so every compute node that waits for it is
// enqueued after its bytes have landed. Kernels and copies overlap, and the host never waits for
// the compute stream inside a step.
//
// Data parallel (ZeRO stages 0-3) over a host communicator (MPI): a collective node copies its
// tensors into host memory on the copy stream, runs the collective there, rounds what it summed
// to the working precision and copies the tensors back, all before it reports itself done; the
// bytes it moves are those of the CPU's run, plus the two copies. A communicator on device memory
// (NCCL) is not wired into the step yet, and check_plan and ops without a CUDA kernel do not run
// on a device: each is refused when compiling (compile.cc).
#if STRATA_HAVE_CUDA
struct Program::DeviceState : TierStore::DeviceCopies {
  absl::Status Copy(void* dst, const void* src, int64_t bytes) override {
    return copies->Copy(dst, src, bytes);
  }
  absl::Status Wait() override { return copies->Wait(); }

  std::unique_ptr<CudaStream> stream;  // nodes enqueue on its handle; its own queue stays idle
  std::unique_ptr<cuda::CublasHandle> blas;
  std::unique_ptr<cuda::CopyQueue> copies;  // the side streams' transfers
  // The store's host region and staging buffers, registered while the program lives.
  std::vector<std::unique_ptr<RegisteredHostMemory>> registered;
  // Data parallel over a host communicator: the host copies of one collective's tensors.
  std::mutex collective_mutex;
  Tensor collective_staging;
  std::unique_ptr<RegisteredHostMemory> collective_pin;
};
#else
struct Program::DeviceState {};
#endif

Program::~Program() {
  // The device must be done with the regions before they go back to their allocators.
  if (device_ == nullptr) return;
  SynchronizeDevice().IgnoreError();
#if STRATA_HAVE_CUDA
  if (device_->copies != nullptr) device_->copies->Wait().IgnoreError();
  device_->registered.clear();  // before the store frees what they registered
#endif
}

absl::Status Program::CreateDeviceContext() {
#if STRATA_HAVE_CUDA
  const Device d = config_.device;
  auto state = std::make_unique<DeviceState>();
  STRATA_ASSIGN_OR_RETURN(state->stream, CudaStream::Create(d, "program compute"));
  STRATA_ASSIGN_OR_RETURN(state->blas, cuda::CublasHandle::Create(d.index()));
  STRATA_ASSIGN_OR_RETURN(persistent_allocator_, CreateCudaDeviceAllocator(d, &ledger_));
  STRATA_ASSIGN_OR_RETURN(arena_allocator_, CreateCudaDeviceAllocator(d, &ledger_));
  STRATA_ASSIGN_OR_RETURN(state->copies, cuda::CopyQueue::Create(d, state->stream->handle()));
  cuda_ = CudaContext{state->stream->handle(), state->blas.get()};
  cuda_bf16_ = cuda_;
  cuda_bf16_.bf16_operands = true;
  device_ = std::move(state);
  return absl::OkStatus();
#else
  return absl::FailedPreconditionError(absl::StrCat("program: device ", config_.device.ToString(),
                                                    ": this build has no CUDA backend"));
#endif
}

absl::Status Program::Copy(const Tensor& dst, const Tensor& src) const {
#if STRATA_HAVE_CUDA
  if (device_ != nullptr) return cuda::CopyTensor(cuda_.stream, dst, src);
#endif
  return dst.CopyFrom(src);
}

absl::StatusOr<float> Program::ReadFloat(const Tensor& t) const {
#if STRATA_HAVE_CUDA
  if (device_ != nullptr) return cuda::ReadScalar(cuda_.stream, t);
#endif
  return t.data<float>()[0];
}

absl::Status Program::ConnectStoreToDevice() {
#if STRATA_HAVE_CUDA
  if (device_ == nullptr || store_ == nullptr) return absl::OkStatus();
  auto pin = [&](void* data, size_t bytes) -> absl::Status {
    if (bytes == 0) return absl::OkStatus();
    STRATA_ASSIGN_OR_RETURN(auto registered, RegisteredHostMemory::Register(data, bytes));
    device_->registered.push_back(std::move(registered));
    return absl::OkStatus();
  };
  STRATA_RETURN_IF_ERROR(pin(store_->host_region(), static_cast<size_t>(plan_.host_bytes)));
  STRATA_RETURN_IF_ERROR(pin(store_->staging_buffers().data(), store_->staging_buffers().size()));
  store_->set_device_copies(device_.get());
#endif
  return absl::OkStatus();
}

absl::Status Program::MoveBytes(void* dst, const void* src, int64_t bytes) {
#if STRATA_HAVE_CUDA
  if (device_ != nullptr) return device_->copies->Copy(dst, src, bytes);
#endif
  std::memcpy(dst, src, static_cast<size_t>(bytes));
  return absl::OkStatus();
}

absl::Status Program::SynchronizeDevice() const {
#if STRATA_HAVE_CUDA
  if (device_ != nullptr) return device_->stream->Synchronize();
#endif
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Program>> Program::Create(Graph graph, MemoryPlan plan,
                                                         Config config) {
  std::unique_ptr<Program> p(new Program(std::move(graph), std::move(plan), std::move(config)));
  STRATA_RETURN_IF_ERROR(p->CheckSameProgramOnEveryRank());
  STRATA_RETURN_IF_ERROR(p->Bind());
  STRATA_RETURN_IF_ERROR(p->InitializeParameters());
  return p;
}

absl::Status Program::Bind() {
  // Both regions are the compute tier (DESIGN.md, "Execution model"): host memory on the CPU,
  // the device's on a CUDA device (Note [the step on a device]).
  const Device device = config_.device;
  if (device.is_cuda()) {
    STRATA_RETURN_IF_ERROR(CreateDeviceContext());
  } else {
    persistent_allocator_ =
        std::make_unique<HostAllocator>(MemoryTier::kDevice, &ledger_, "program persistent");
    arena_allocator_ =
        std::make_unique<HostAllocator>(MemoryTier::kDevice, &ledger_, "program arena");
  }
  const size_t alignment = device.is_cuda() ? 256 : kIoAlignment;  // cudaMalloc gives 256
  STRATA_ASSIGN_OR_RETURN(persistent_,
                          persistent_allocator_->Allocate(plan_.persistent_bytes, alignment));
  if (!config_.check_plan) {
    STRATA_ASSIGN_OR_RETURN(arena_, arena_allocator_->Allocate(plan_.arena_bytes, alignment));
  }
  auto persistent = std::make_shared<Storage>(persistent_.data(), persistent_.size(), device);
  auto arena = std::make_shared<Storage>(arena_.data(), arena_.size(), device);
  if (persistent_.size() > 0) {
    const Tensor all = Tensor::Wrap(
        persistent_.data(), Shape{static_cast<int64_t>(persistent_.size())}, DType::kU8, device);
    if (device.is_cuda()) {
#if STRATA_HAVE_CUDA
      STRATA_RETURN_IF_ERROR(cuda::ZeroTensor(cuda_.stream, all));
#endif
    } else {
      std::memset(persistent_.data(), 0, persistent_.size());
    }
  }
  const bool staging = TierStore::NeedsStaging(graph_, plan_);
  if (plan_.host_bytes > 0 || staging) {
    STRATA_ASSIGN_OR_RETURN(store_,
                            TierStore::Create(config_.offload, &ledger_, plan_.host_bytes, staging));
    STRATA_RETURN_IF_ERROR(ConnectStoreToDevice());
  }
  // Host memory is addressable on every build (pinned memory on a GPU one).
  auto host = std::make_shared<Storage>(store_ ? store_->host_region() : nullptr, plan_.host_bytes,
                                        Device::Cpu());
  extents_.assign(graph_.num_values(), offload::Extent{});

  tensors_.assign(graph_.num_values(), Tensor());
  if (config_.check_plan) {
    blocks_.resize(graph_.num_values());
    live_.assign(graph_.num_values(), false);
    born_at_.assign(graph_.nodes().size(), {});
    dead_after_.assign(graph_.nodes().size(), {});
  }
  for (ValueId v = 0; v < graph_.num_values(); ++v) {
    if (plan_.offset[v] < 0) continue;
    const Value& value = graph_.value(v);
    if (config_.check_plan && !IsPersistent(value.role)) {
      // Bound while live only (RunChecked).
      const auto [first, last] = plan_.live[v];
      if (first < 0 || first > last || last >= static_cast<int>(graph_.nodes().size())) {
        return absl::InternalError(absl::StrCat("check-plan: ", Describe(v), " has live interval [",
                                                first, ", ", last, "] outside the ",
                                                graph_.nodes().size(), " nodes"));
      }
      born_at_[first].push_back(v);
      dead_after_[last].push_back(v);
      continue;
    }
    const size_t elem = SizeOf(value.type.dtype);
    const bool persists = IsPersistent(value.role);
    if (persists && value.home == MemoryTier::kNvme) {
      absl::StatusOr<offload::Extent> extent =
          store_->AllocateExtent(static_cast<int64_t>(value.nbytes()));
      // The engine names one extent; the user needs the total that the directory must hold.
      if (!extent.ok()) {
        return absl::Status(extent.status().code(),
                            absl::StrCat(extent.status().message(), "; the plan places ",
                                         plan_.nvme_bytes, " bytes of state on nvme (", Describe(v),
                                         " did not fit)"));
      }
      extents_[v] = *extent;
      continue;
    }
    std::shared_ptr<Storage> region = !persists                           ? arena
                                      : value.home == MemoryTier::kHost ? host
                                                                        : persistent;
    const Shape shape = HeldShape(value);
    STRATA_ASSIGN_OR_RETURN(
        tensors_[v], Tensor::View(region, shape, ContiguousStrides(shape),
                                  plan_.offset[v] / static_cast<int64_t>(elem), value.type.dtype));
  }
  for (const auto& [v, bytes] : graph_.constants()) {
    if (!tensors_[v].defined()) continue;
    const Tensor& t = tensors_[v];
    // Wrap takes a mutable pointer; the copy only reads it.
    STRATA_RETURN_IF_ERROR(Copy(
        t, Tensor::Wrap(const_cast<char*>(bytes.data()), t.shape(), t.dtype(), Device::Cpu())));
  }
  const std::vector<bool> holds_bf16 = HoldsBf16(graph_);
  for (const Node& n : graph_.nodes()) {
    Instruction ins{n.op.get(), {}, {}, {}, n.phase, &n, {}, {}};
    for (ValueId v : n.inputs) ins.in.push_back(tensors_[v]);
    for (ValueId v : n.outputs) ins.out.push_back(v == kNoValue ? Tensor() : tensors_[v]);
    for (int j = 0; j < static_cast<int>(n.outputs.size()); ++j) {
      const ValueId v = n.outputs[j];
      if (v != kNoValue && graph_.value(v).precision != DType::kF32) {
        ins.rounded_out.push_back({j, graph_.value(v).precision});
      }
    }
    for (int j : n.op->MutatedInputs()) {
      const DType precision = graph_.value(n.inputs[j]).precision;
      if (precision != DType::kF32) ins.rounded_in.push_back({j, precision});
    }
    STRATA_RETURN_IF_ERROR(BindShardedUpdate(n, ins));
    ins.bf16_operands = ReadsOnlyBf16(graph_, n, holds_bf16);
    if (n.workspace != kNoValue && tensors_[n.workspace].defined()) {  // else bound while live
      const Tensor& w = tensors_[n.workspace];
      ins.workspace = absl::MakeSpan(w.data<float>(), w.numel());
      ins.workspace_tensor = w;
    }
    has_update_phase_ = has_update_phase_ || n.phase == Phase::kUpdate;
    instructions_.push_back(std::move(ins));
  }
  node_ms_.assign(instructions_.size(), 0.0);
  for (const Config::Param& p : config_.params) {
    named_params_.push_back({p.path, tensors_[p.value]});
    param_values_.push_back({p.path, p.value});
  }
  for (const auto& [name, v] : config_.gradients) named_grads_.push_back({name, tensors_[v]});
  for (const auto& [name, v] : config_.optimizer_state) {
    if (plan_.offset[v] < 0) continue;  // unused (dead code)
    named_state_.push_back({name, tensors_[v]});
    state_values_.push_back({name, v});
  }
  return PlanStreams();
}

// An update of a reduce-scattered gradient (ZeRO stages 1-2) changes only this rank's elements
// of a parameter that every rank holds whole: it reads them as a view (Note [zero partition]).
absl::Status Program::BindShardedUpdate(const Node& n, Instruction& ins) {
  if (!IsOptimizerUpdate(n)) return absl::OkStatus();
  const Value& grad = graph_.value(n.inputs[1]);
  const Value& param = graph_.value(n.inputs[0]);
  const Tensor& whole = tensors_[n.inputs[0]];
  if (!grad.shard || param.shard || !whole.defined()) return absl::OkStatus();
  STRATA_ASSIGN_OR_RETURN(ins.in[0], FlatRange(whole, grad.shard->offset, grad.shard->count));
  return absl::OkStatus();
}

// Note [the IO stream]
// Nodes that move bytes between tiers run on an IO stream, and collectives on a communication
// stream (a worker thread each here; a copy stream, host threads and NCCL's stream on a GPU
// build), while compute goes on (graph/streams.h); the order and the waits are those of
// Note [the offload schedule] (graph/passes/schedule_offload.cc), fixed at compile time, so a
// step allocates nothing and needs no tracing. With check_plan every node runs in order on the
// calling thread, IO included, so that each value's block exists exactly over its interval.
absl::Status Program::PlanStreams() {
  const int n = static_cast<int>(instructions_.size());
  deferred_.assign(n, false);
  hands_to_.assign(n, -1);
  hands_input_.assign(n, -1);
  handed_.assign(n, 0);
  std::vector<int> stream_of(n);
  bool any = false;
  for (int i = 0; i < n; ++i) {
    stream_of[i] = static_cast<int>(StreamOf(graph_, *instructions_[i].node));
    any = any || stream_of[i] >= 0;
  }
  if (!any || config_.check_plan) return absl::OkStatus();
  std::vector<int> completion = IoCompletionPoints(graph_);
  std::vector<int> all, micro, update;
  for (int i = 0; i < n; ++i) {
    all.push_back(i);
    (instructions_[i].phase == Phase::kMicroStep ? micro : update).push_back(i);
  }
  // Note [deferred updates]: the step's last sequence leaves its tail to the next step's first.
  const bool one = config_.micro_batches == 1;
  std::vector<int>& last = one ? all : update;
  const std::vector<int> tail = DeferredUpdates(graph_, last, config_.grad_norm);
  if (!tail.empty()) {
    for (int i : tail) deferred_[i] = true;
    last.erase(std::remove_if(last.begin(), last.end(), [&](int i) { return deferred_[i]; }),
               last.end());
    // A completion point at a deferred node (say a write-back's, at the update after it) moves
    // to the next node left in the step: at the end of the sequence, the wait would come after
    // compute nodes that the memory plan lets reuse the bytes it still reads.
    for (int i = 0; i < n; ++i) {
      while (completion[i] >= 0 && completion[i] < n && deferred_[completion[i]]) ++completion[i];
    }
    const DeferredSequence steady =
        InterleaveDeferred(graph_, tail, one ? all : micro, config_.grad_norm);
    std::vector<int> steady_completion = completion;
    std::vector<bool> binds_one_node(n, false);
    for (size_t k = 0; k < tail.size(); ++k) {
      steady_completion[tail[k]] = steady.completion[k];
      binds_one_node[tail[k]] = steady.binds_one_node[k];
      hands_to_[tail[k]] = steady.hands_to[k];
      hands_input_[tail[k]] = steady.hands_input[k];
    }
    steady_ = Streams::Plan(steady.entries, stream_of, steady_completion, binds_one_node);
    tail_ = Streams::Plan(tail, stream_of, completion);
  }
  all_ = Streams::Plan(all, stream_of, completion);
  micro_ = Streams::Plan(micro, stream_of, completion);
  update_ = Streams::Plan(update, stream_of, completion);
  run_instruction_ = [this](int i) { return Run(instructions_[i]); };
  streams_ = std::make_unique<Streams>();
  return absl::OkStatus();
}

absl::Status Program::InitializeParameters() {
  for (const Config::Param& p : config_.params) {
    const Value& value = graph_.value(p.value);
    // A parameter homed on NVMe is drawn in memory, one at a time, then written home; so is a
    // ZeRO shard, drawn whole (the same numbers on every rank and in any world size) and cut.
    // So is a parameter on a CUDA device: drawn on the host, then copied in.
    const bool in_place =
        tensors_[p.value].defined() && !value.shard && tensors_[p.value].device().is_cpu();
    Tensor t = tensors_[p.value];
    if (!in_place) {
      STRATA_ASSIGN_OR_RETURN(t, Tensor::Empty(value.type.shape, DType::kF32, DefaultCpuAllocator()));
    }
    float* d = t.data<float>();
    const int64_t n = t.numel();
    Rng rng(HashPath(config_.seed, p.path));
    for (int64_t i = 0; i < n; ++i) {
      switch (p.init_kind) {
        case 0: d[i] = static_cast<float>(p.a); break;                        // constant
        case 1: d[i] = static_cast<float>(p.a + p.b * rng.Normal()); break;   // normal
        default: d[i] = static_cast<float>(p.a + (p.b - p.a) * rng.Uniform()); break;
      }
    }
    if (in_place) continue;
    if (value.shard) {
      STRATA_ASSIGN_OR_RETURN(t, FlatRange(t, value.shard->offset, value.shard->count));
    }
    STRATA_RETURN_IF_ERROR(WriteState(p.value, t));
  }
  return absl::OkStatus();
}

int64_t Program::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, v] : param_values_) n += graph_.value(v).type.shape.numel();
  return n;
}

absl::StatusOr<Tensor> Program::ReadState(ValueId id, Allocator& allocator) const {
  if (id < 0 || id >= graph_.num_values() || !IsPersistent(graph_.value(id).role) ||
      plan_.offset[id] < 0) {
    return absl::NotFoundError(absl::StrCat("program has no state value %", id));
  }
  // The pending updates belong to the last step: finishing them changes no state a caller saw.
  STRATA_RETURN_IF_ERROR(const_cast<Program*>(this)->Flush());
  const Value& value = graph_.value(id);
  STRATA_ASSIGN_OR_RETURN(Tensor copy, Tensor::Empty(HeldShape(value), value.type.dtype, allocator));
  if (tensors_[id].defined()) {
    STRATA_RETURN_IF_ERROR(Copy(copy, tensors_[id]));
    STRATA_RETURN_IF_ERROR(SynchronizeDevice());
  } else {
    STRATA_RETURN_IF_ERROR(store_->Read(extents_[id], copy.raw_data(), copy.nbytes()));
  }
  return copy;
}

absl::Status Program::WriteState(ValueId id, const Tensor& src) {
  if (id < 0 || id >= graph_.num_values() || !IsPersistent(graph_.value(id).role) ||
      plan_.offset[id] < 0) {
    return absl::NotFoundError(absl::StrCat("program has no state value %", id));
  }
  STRATA_RETURN_IF_ERROR(Flush());
  const Value& value = graph_.value(id);
  const bool whole = value.shard && src.shape() == value.type.shape;  // this rank's part of it
  if (src.dtype() != value.type.dtype || (src.shape() != HeldShape(value) && !whole) ||
      !src.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat("WriteState: ", Describe(id), " cannot take ",
                                                   src.ToString()));
  }
  Tensor held = src;
  if (whole) {
    STRATA_ASSIGN_OR_RETURN(held, FlatRange(src, value.shard->offset, value.shard->count));
  }
  if (tensors_[id].defined()) {
    STRATA_RETURN_IF_ERROR(Copy(tensors_[id], held));
    return SynchronizeDevice();  // `src` is the caller's again on return
  }
  return store_->Write(extents_[id], held.raw_data(), static_cast<int64_t>(held.nbytes()));
}

absl::StatusOr<Tensor> Program::parameter(const std::string& path) const {
  for (const auto& [name, t] : named_params_) {
    if (name == path) return t;
  }
  return absl::NotFoundError(absl::StrCat("program has no parameter named ", path));
}

absl::StatusOr<Tensor> Program::value(ValueId id) const {
  if (id < 0 || id >= graph_.num_values() || !tensors_[id].defined()) {
    return absl::NotFoundError(
        absl::StrCat("program has no bytes for value %", id,
                     id >= 0 && id < graph_.num_values() ? " (no remaining node uses it)" : ""));
  }
  return tensors_[id];
}

MemoryReport ReportPlannedMemory(const Graph& graph, const MemoryPlan& plan,
                                 const Program::Config& config) {
  MemoryReport r;
  r.persistent_bytes = plan.persistent_bytes;
  r.arena_bytes = plan.arena_bytes;
  r.live_peak_bytes = plan.live_peak_bytes;
  r.planned_peak[static_cast<int>(MemoryTier::kDevice)] =
      r.persistent_bytes + (config.check_plan ? r.live_peak_bytes : r.arena_bytes);
  r.host_bytes = plan.host_bytes;
  r.staging_bytes =
      TierStore::NeedsStaging(graph, plan) ? TierStore::StagingBytes(config.offload) : 0;
  r.nvme_bytes = plan.nvme_bytes;
  r.planned_peak[static_cast<int>(MemoryTier::kHost)] = r.host_bytes + r.staging_bytes;
  r.planned_peak[static_cast<int>(MemoryTier::kNvme)] = r.nvme_bytes;
  r.budget[static_cast<int>(MemoryTier::kDevice)] = config.offload.device_bytes;
  r.budget[static_cast<int>(MemoryTier::kHost)] = config.offload.host_bytes;
  r.prefetch_bytes = config.offload.prefetch_bytes;
  return r;
}

MemoryReport Program::memory_report() const {
  MemoryReport r = ReportPlannedMemory(graph_, plan_, config_);
  if (store_ != nullptr && plan_.nvme_bytes > 0) r.io = store_->Describe();
  return r;
}

absl::Status Program::CheckBatch(absl::Span<const Tensor> batch) const {
  if (batch.size() != config_.inputs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("step: got ", batch.size(),
                                                   " input tensors, the program was compiled for ",
                                                   config_.inputs.size()));
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    const InputSpec& spec = config_.inputs[i];
    Dims want(spec.shape.dims().begin(), spec.shape.dims().end());
    if (!want.empty()) want[0] *= config_.micro_batches;
    const Tensor& t = batch[i];
    if (!t.defined() || t.dtype() != spec.dtype || t.shape() != Shape(want) ||
        !t.is_contiguous()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step: input '", spec.name, "' is ", t.defined() ? t.ToString() : "undefined",
          ", the program was compiled for contiguous ", DTypeName(spec.dtype), Shape(want).ToString(),
          config_.micro_batches > 1
              ? absl::StrCat(" (", config_.micro_batches, " micro-batches of ", spec.shape.ToString(), ")")
              : ""));
    }
    // A device program copies from host or device memory; a CPU one reads host memory only.
    if (device_ == nullptr && !t.device().host_addressable()) {
      return absl::InvalidArgumentError(absl::StrCat("step: input '", spec.name, "' is on ",
                                                     t.device().ToString(),
                                                     "; the program runs on the CPU"));
    }
  }
  return absl::OkStatus();
}

absl::Status Program::LoadMicroBatch(absl::Span<const Tensor> batch, int index) {
  for (size_t i = 0; i < batch.size(); ++i) {
    const Tensor& dst = tensors_[config_.input_values[i]];
    if (!dst.defined()) continue;  // an input the loss does not use
    const char* src = static_cast<const char*>(batch[i].raw_data()) + index * dst.nbytes();
    if (device_ == nullptr) {
      std::memcpy(dst.raw_data(), src, dst.nbytes());
      continue;
    }
    // Ordered before the micro-batch's nodes on the stream; from pageable memory the copy has
    // read `src` when the call returns, from the device's or pinned memory it is read in order.
    STRATA_RETURN_IF_ERROR(Copy(
        dst, Tensor::Wrap(const_cast<char*>(src), dst.shape(), dst.dtype(), batch[i].device())));
  }
  return absl::OkStatus();
}

absl::Status Program::Run(const Instruction& ins) {
  const auto start = profiling_ ? std::chrono::steady_clock::now()
                                : std::chrono::steady_clock::time_point();
  absl::Status s = ins.op->RunsOnSideStream()
                       ? RunIo(ins)
                       : ins.op->Run(RunArgs{ins.in, ins.out, ins.workspace, &scalars_, cuda(ins),
                                             ins.workspace_tensor});
  // Note [mixed precision]: a value stored in the working precision is rounded to it as soon as
  // it is written, as an output or in place (a gradient an all_reduce summed).
  auto round = [&](const Tensor& t, DType precision) {
#if STRATA_HAVE_CUDA
    if (device_ != nullptr && t.device().is_cuda()) {
      // A side-stream node on a device has rounded what it wrote already (a collective's sums,
      // in host memory) or wrote rounded bytes (a copy, zeros, f32 state): rounding again on the
      // compute stream would not be ordered with its transfers.
      if (ins.op->RunsOnSideStream()) return absl::OkStatus();
      return cuda::RoundToPrecision(cuda_.stream, t, precision);
    }
#endif
    return cpu::RoundToPrecision(t, precision);
  };
  for (const auto& [j, precision] : ins.rounded_out) {
    if (s.ok() && ins.out[j].defined()) s = round(ins.out[j], precision);
  }
  for (const auto& [j, precision] : ins.rounded_in) {
    if (s.ok()) s = round(ins.in[j], precision);
  }
  // A node's time on a device is its kernels' only once the device is done with them.
  if (profiling_ && s.ok()) s = SynchronizeDevice();
  if (profiling_) {
    node_ms_[&ins - instructions_.data()] +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(ins.node->scope.empty() ? "" : ins.node->scope + ": ",
                                             s.message()));
}

absl::Status Program::RunIo(const Instruction& ins) {
#if STRATA_HAVE_CUDA
  if (device_ != nullptr) {  // Note [the step on a device]: ordered after compute, done on return
    STRATA_RETURN_IF_ERROR(device_->copies->OrderAfterCompute());
    const absl::Status moved = RunIoNode(ins);
    const absl::Status landed = device_->copies->Wait();
    return moved.ok() ? landed : moved;
  }
#endif
  return RunIoNode(ins);
}

absl::Status Program::RunIoNode(const Instruction& ins) {
  const Node& n = *ins.node;
  switch (ins.op->kind()) {
    case OpKind::kFetch: {
      // Note [handing the parameter over]: the inputs whose bytes a deferred update put there.
      const int self = static_cast<int>(&ins - instructions_.data());
      const uint64_t handed = handed_[self];
      handed_[self] = 0;
      // A ZeRO stage-3 parameter's home holds its shard: read into the shard's place in the
      // copy, then gathered, a bucket of them in one collective (Note [zero partition]).
      std::array<Tensor, kMaxGatherBucket> shards, wholes;
      int gathered = 0;
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        const ValueId home = n.inputs[i];
        const Value& value = graph_.value(home);
        const bool gathers = value.shard && !graph_.value(n.outputs[i]).shard;
        const int64_t offset = gathers ? value.shard->offset : 0;
        const Tensor& dst = ins.out[i];
        char* to = static_cast<char*>(dst.raw_data()) + offset * SizeOf(dst.dtype());
        const int64_t bytes = static_cast<int64_t>(value.nbytes());
        if (((handed >> i) & 1) == 0 && value.home == MemoryTier::kNvme) {
          STRATA_RETURN_IF_ERROR(store_->Read(extents_[home], to, bytes));
        } else if (((handed >> i) & 1) == 0 && bytes > 0) {
          STRATA_RETURN_IF_ERROR(MoveBytes(to, tensors_[home].raw_data(), bytes));
          if (value.home == MemoryTier::kHost) store_->CountRead(MemoryTier::kHost, bytes);
        }
        if (!gathers) continue;
        if (gathered == kMaxGatherBucket) {
          return absl::InternalError(absl::StrCat("fetch: a bucket of more than ",
                                                  kMaxGatherBucket, " gathers"));
        }
        STRATA_ASSIGN_OR_RETURN(shards[gathered], FlatRange(dst, offset, value.shard->count));
        STRATA_ASSIGN_OR_RETURN(wholes[gathered], FlatRange(dst, 0, dst.numel()));
        ++gathered;
      }
      collectives::Communicator* comm = config_.communicator;
      if (gathered == 0 || comm == nullptr || comm->world_size() == 1) return absl::OkStatus();
      return OnCommunicatorMemory(
          absl::MakeConstSpan(wholes.data(), gathered), {},
          [&](absl::Span<const Tensor> whole) -> absl::Status {
            // This rank's shard of each, where it is in `whole` (a host copy, or itself).
            std::array<Tensor, kMaxGatherBucket> mine;
            for (int g = 0; g < gathered; ++g) {
              const int64_t at = shards[g].offset() - wholes[g].offset();
              STRATA_ASSIGN_OR_RETURN(mine[g], FlatRange(whole[g], at, shards[g].numel()));
            }
            return gathered == 1 ? comm->Blocking().AllGather(mine[0], whole[0])
                                 : comm->Blocking().AllGatherBucketed(
                                       absl::MakeConstSpan(mine.data(), gathered), whole);
          });
    }
    case OpKind::kWriteBack: {
      const ValueId home = n.inputs[1];
      const Value& value = graph_.value(home);
      const int64_t offset = value.shard && !graph_.value(n.inputs[0]).shard ? value.shard->offset : 0;
      const Tensor& src = ins.in[0];
      const char* from = static_cast<const char*>(src.raw_data()) + offset * SizeOf(src.dtype());
      const int64_t bytes = static_cast<int64_t>(value.nbytes());
      if (value.home == MemoryTier::kNvme) return store_->Write(extents_[home], from, bytes);
      if (bytes > 0) STRATA_RETURN_IF_ERROR(MoveBytes(tensors_[home].raw_data(), from, bytes));
      if (value.home == MemoryTier::kHost) store_->CountWrite(MemoryTier::kHost, bytes);
      return absl::OkStatus();
    }
    case OpKind::kOffloadedUpdate: return RunOffloadedUpdate(ins);
    case OpKind::kAllReduce: {
      collectives::Communicator* comm = config_.communicator;
      if (comm == nullptr && device_ == nullptr) {
        return ins.op->Run(RunArgs{ins.in, ins.out, {}, &scalars_});
      }
      if (comm == nullptr) {
        return absl::InternalError("all_reduce on a device without a communicator");
      }
      std::vector<DType> precision(ins.in.size(), DType::kF32);  // Note [mixed precision]
      for (const auto& [j, p] : ins.rounded_in) precision[j] = p;
      return OnCommunicatorMemory(ins.in, precision, [&](absl::Span<const Tensor> t) {
        return t.size() == 1 ? comm->Blocking().AllReduce(t[0])
                             : comm->Blocking().AllReduceBucketed(t);
      });
    }
    case OpKind::kReduceScatter: {
      collectives::Communicator* comm = config_.communicator;
      if (comm == nullptr && device_ == nullptr) {
        return ins.op->Run(RunArgs{ins.in, ins.out, {}, &scalars_});
      }
      if (comm == nullptr) {
        return absl::InternalError("reduce_scatter on a device without a communicator");
      }
      STRATA_ASSIGN_OR_RETURN(const Tensor whole, FlatRange(ins.in[0], 0, ins.in[0].numel()));
      // The shard may be the whole's own elements: copied back after it, it lands last.
      const std::array<Tensor, 2> both = {whole, ins.out[0]};
      const std::array<DType, 2> precision = {DType::kF32, graph_.value(n.outputs[0]).precision};
      return OnCommunicatorMemory(both, precision, [&](absl::Span<const Tensor> t) {
        return comm->Blocking().ReduceScatter(t[0], t[1]);
      });
    }
    case OpKind::kAllGather: {
      collectives::Communicator* comm = config_.communicator;
      if (comm == nullptr) return absl::OkStatus();
      return OnCommunicatorMemory(
          absl::MakeConstSpan(&ins.in[0], 1), {}, [&](absl::Span<const Tensor> t) {
            return Gather(t[0],
                          collectives::ShardOf(t[0].numel(), comm->world_size(), comm->rank()));
          });
    }
    default:
      return absl::InternalError(absl::StrCat(ins.op->name(), " runs on a side stream but is not IO nor a collective"));
  }
}

absl::Status Program::OnCommunicatorMemory(
    absl::Span<const Tensor> tensors, absl::Span<const DType> precision,
    absl::FunctionRef<absl::Status(absl::Span<const Tensor>)> collective) {
#if STRATA_HAVE_CUDA
  if (device_ != nullptr && !config_.communicator->device().is_cuda()) {
    DeviceState& d = *device_;
    std::lock_guard lock(d.collective_mutex);
    constexpr int64_t kAlign = 64;
    std::vector<int64_t> at(tensors.size());
    int64_t total = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!tensors[i].is_contiguous()) {
        return absl::InternalError(absl::StrCat("collective on ", config_.device.ToString(), ": ",
                                                tensors[i].ToString(), " is not contiguous"));
      }
      at[i] = total;
      total += (static_cast<int64_t>(tensors[i].nbytes()) + kAlign - 1) / kAlign * kAlign;
    }
    if (!d.collective_staging.defined() || d.collective_staging.numel() < total) {
      d.collective_pin.reset();  // before the bytes it registered go
      STRATA_ASSIGN_OR_RETURN(d.collective_staging,
                              Tensor::Empty(Shape{total}, DType::kU8, DefaultCpuAllocator()));
      STRATA_ASSIGN_OR_RETURN(d.collective_pin,
                              RegisteredHostMemory::Register(d.collective_staging.raw_data(),
                                                             static_cast<size_t>(total)));
    }
    std::vector<Tensor> host(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      const int64_t elem = static_cast<int64_t>(SizeOf(t.dtype()));
      STRATA_ASSIGN_OR_RETURN(host[i],
                              Tensor::View(d.collective_staging.storage(), t.shape(),
                                           ContiguousStrides(t.shape()), at[i] / elem, t.dtype()));
      STRATA_RETURN_IF_ERROR(d.copies->Copy(host[i].raw_data(), t.raw_data(), t.nbytes()));
    }
    STRATA_RETURN_IF_ERROR(d.copies->Wait());
    STRATA_RETURN_IF_ERROR(collective(host));
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (i < precision.size() && precision[i] != DType::kF32) {
        STRATA_RETURN_IF_ERROR(cpu::RoundToPrecision(host[i], precision[i]));
      }
      STRATA_RETURN_IF_ERROR(
          d.copies->Copy(tensors[i].raw_data(), host[i].raw_data(), tensors[i].nbytes()));
    }
    return d.copies->Wait();
  }
#endif
  // In the memory the step runs in; rounded after the node (Program::Run).
  return collective(tensors);
}

absl::Status Program::Gather(const Tensor& whole, const collectives::ShardRange& mine) {
  collectives::Communicator* comm = config_.communicator;
  if (comm == nullptr || comm->world_size() == 1) return absl::OkStatus();
  STRATA_ASSIGN_OR_RETURN(const Tensor shard, FlatRange(whole, mine.offset, mine.count));
  STRATA_ASSIGN_OR_RETURN(const Tensor flat, FlatRange(whole, 0, whole.numel()));
  return comm->Blocking().AllGather(shard, flat);
}

absl::Status Program::RunOffloadedUpdate(const Instruction& ins) {
  const Node& n = *ins.node;
  const Op& update = ops::OffloadedChunkUpdate(*ins.op);
  const ops::UpdateSlice slice = ops::UpdateSliceOf(*ins.op);
  const bool has_norm = config_.grad_norm != kNoValue && n.inputs.back() == config_.grad_norm;
  // A deferred update runs inside the next step, with the scalars and norm of its own.
  const bool deferred = deferred_[&ins - instructions_.data()];
  StepScalars* scalars = deferred ? &deferred_scalars_ : &scalars_;
  const int k = static_cast<int>(n.inputs.size()) - (has_norm ? 1 : 0);
  const std::vector<int> mutated = ins.op->MutatedInputs();  // with a gradient it zeroes
  const bool zeroes_gradient = ops::OffloadedUpdateZeroesGradient(*ins.op);
  std::array<TierStore::Operand, 4> operands;
  for (int j = 0; j < k; ++j) {
    const ValueId v = n.inputs[j];
    const Value& value = graph_.value(v);
    TierStore::Operand& o = operands[j];
    o.tier = IsPersistent(value.role) ? value.home : MemoryTier::kDevice;
    if (o.tier == MemoryTier::kNvme) {
      o.extent = extents_[v];
    } else {
      o.data = ins.in[j].data<float>();
    }
    // A gradient spilled home for its update is dead after it: clipping scales it in place,
    // but nothing reads the scaled bytes, so they are not written back.
    o.mutated = std::find(mutated.begin(), mutated.end(), j) != mutated.end() &&
                value.role != ValueRole::kSpilled;
  }
  if (!slice.whole()) {  // Note [partial channels offloaded]: the parameter's trained channels
    if (operands[0].tier == MemoryTier::kNvme) {
      return absl::InternalError(absl::StrCat(
          "offloaded_update: ", graph_.value(n.inputs[0]).name,
          " trains part of its channels but is read at its NVMe home, not from a fetched copy"));
    }
    operands[0].run = slice.prefix;
    operands[0].stride = slice.stride;
  }
  Tensor norm;
  if (has_norm) {  // four bytes of the device, copied once
    if (deferred) {
      norm_scratch_[0] = deferred_norm_;
    } else {
      STRATA_RETURN_IF_ERROR(MoveBytes(norm_scratch_, ins.in.back().data<float>(), sizeof(float)));
#if STRATA_HAVE_CUDA
      if (device_ != nullptr) STRATA_RETURN_IF_ERROR(device_->copies->Wait());
#endif
    }
    STRATA_ASSIGN_OR_RETURN(
        norm, Tensor::View(std::make_shared<Storage>(norm_scratch_, sizeof(float), Device::Cpu()),
                           Shape{}, {}, 0, DType::kF32));
  }
  const int self = static_cast<int>(&ins - instructions_.data());
  if (running_steady_ && hands_to_[self] >= 0) {  // Note [handing the parameter over]
    const Instruction& fetch = instructions_[hands_to_[self]];
    const int i = hands_input_[self];
    const Value& home = graph_.value(fetch.node->inputs[i]);
    const bool gathers = home.shard && !graph_.value(fetch.node->outputs[i]).shard;
    operands[0].copy_to = fetch.out[i].data<float>() + (gathers ? home.shard->offset : 0);
    handed_[hands_to_[self]] |= uint64_t{1} << i;
  }
  const int64_t numel = graph_.value(n.inputs[1]).numel();  // the shard's, with ZeRO
  return store_->Update(
      absl::MakeConstSpan(operands.data(), k), numel,
      [&](absl::Span<float* const> chunk, int64_t elems) -> absl::Status {
        std::array<Tensor, 5> in;
        for (int j = 0; j < k; ++j) {
          STRATA_ASSIGN_OR_RETURN(
              in[j], Tensor::View(std::make_shared<Storage>(chunk[j], elems * sizeof(float),
                                                            Device::Cpu()),
                                  Shape{elems}, {1}, 0, DType::kF32));
        }
        if (has_norm) in[k] = norm;
        STRATA_RETURN_IF_ERROR(update.Run(
            RunArgs{absl::MakeConstSpan(in.data(), k + (has_norm ? 1 : 0)), {}, {}, scalars}));
        if (zeroes_gradient) std::fill_n(chunk[1], elems, 0.0f);
        return absl::OkStatus();
      });
}

absl::Status Program::RunSequence(const Streams::Sequence& seq) {
  return streams_->Run(seq, run_instruction_, &io_wait_ms_);
}

absl::Status Program::Flush() {
  if (!pending_) return absl::OkStatus();
  pending_ = false;
  double waited = 0;
  return streams_->Run(tail_, run_instruction_, &waited);
}

absl::Status Program::RunPhase(Phase phase, bool all) {
  if (streams_ != nullptr) {
    if (pending_ && phase == Phase::kMicroStep) {  // the first micro-batch takes the last tail
      pending_ = false;
      std::fill(handed_.begin(), handed_.end(), 0);
      running_steady_ = true;
      const absl::Status s = RunSequence(steady_);
      running_steady_ = false;
      return s;
    }
    return RunSequence(all ? all_ : phase == Phase::kMicroStep ? micro_ : update_);
  }
  for (int i = 0; i < static_cast<int>(instructions_.size()); ++i) {
    if (!all && instructions_[i].phase != phase) continue;
    STRATA_RETURN_IF_ERROR(config_.check_plan ? RunChecked(i) : Run(instructions_[i]));
  }
  return absl::OkStatus();
}

// Note [checking the plan]
// A memory plan makes two claims: every arena value is used only inside its live interval
// [first, last] (node indices), and two values live at the same node never share bytes. The
// planned run trusts both: a wrong interval or offset silently corrupts some other value. With
// check_plan the arena is not allocated; instead
//   - before node i runs, each value whose interval starts at i gets its own block from the arena
//     allocator, of the bytes the plan reserves for it; its planned extent [offset, offset + size)
//     must lie in the arena and overlap no live value's, else the step fails naming both;
//   - every arena value that node i reads or writes must be live, else the step fails naming the
//     value, the node and the interval (a liveness that ends too early or starts too late);
//   - after node i, each value whose interval ends there is filled with NaN and freed.
// A fresh block is filled with a signalling NaN, so a kernel that reads bytes it did not write in
// this interval (which the planned arena would feed with another value's leftovers) turns the
// loss into NaN. Under AddressSanitizer the block's padding past the value is poisoned, so a
// kernel that strays past its tensor is reported at the faulting access, and a freed block is
// poisoned by the sanitizer until reused, so a pointer kept past the interval is reported too.
// Since blocks live exactly over their intervals, the arena allocator's high-water mark during a
// step is the plan's largest live set (live_peak_bytes), measured by the allocator. Each value's
// bytes are the same as in the planned run, so losses are bitwise equal to it.
std::string Program::Describe(ValueId v) const {
  const Value& value = graph_.value(v);
  return absl::StrCat("value %", v, value.name.empty() ? "" : absl::StrCat(" '", value.name, "'"),
                      " (", ValueRoleName(value.role), " ", value.type.ToString(), ")");
}

std::string Program::DescribeNode(int index) const {
  const Node& n = *instructions_[index].node;
  return absl::StrCat("node ", index, " (", n.op->name(),
                      n.scope.empty() ? "" : absl::StrCat(" in ", n.scope), ")");
}

absl::Status Program::Allocate(ValueId v, int index) {
  const auto [first, last] = plan_.live[v];
  if (live_[v]) {
    return absl::InternalError(absl::StrCat(
        "check-plan: ", Describe(v), " starts its live interval [", first, ", ", last, "] at ",
        DescribeNode(index), " while still live from the previous micro-batch (an interval that "
        "reaches into the update phase)"));
  }
  const Value& value = graph_.value(v);
  if (const ValueId in = plan_.alias[v]; in != kNoValue) {
    // Note [in-place outputs]: v takes over the block of `in`, which this node reads last; no NaN
    // fill, since the node still reads it.
    if (!live_[in] || plan_.live[in].second != index || plan_.offset[in] != plan_.offset[v]) {
      return absl::InternalError(absl::StrCat("check-plan: ", Describe(v), " takes over the bytes of ",
                                              Describe(in), " at ", DescribeNode(index),
                                              ", which is not where that value dies"));
    }
    blocks_[v] = std::move(blocks_[in]);  // Release(in) then frees nothing
    if (blocks_[v].size() > 0) live_extents_[plan_.offset[v]] = v;
  } else {
    STRATA_RETURN_IF_ERROR(AllocateBlock(v, index));
  }
  live_[v] = true;
  auto storage = std::make_shared<Storage>(blocks_[v].data(), value.nbytes(), Device::Cpu());
  const Shape shape = HeldShape(value);
  STRATA_ASSIGN_OR_RETURN(tensors_[v], Tensor::View(std::move(storage), shape,
                                                    ContiguousStrides(shape), 0,
                                                    value.type.dtype));
  return absl::OkStatus();
}

// A fresh block for v, at its planned extent, checked against every live value's.
absl::Status Program::AllocateBlock(ValueId v, int index) {
  const auto [first, last] = plan_.live[v];
  const Value& value = graph_.value(v);
  const int64_t bytes = PlannedBytes(value), begin = plan_.offset[v], end = begin + bytes;
  if (end > plan_.arena_bytes) {
    return absl::InternalError(absl::StrCat("check-plan: ", Describe(v), " is planned at [", begin,
                                            ", ", end, "), past the arena's ", plan_.arena_bytes,
                                            " bytes"));
  }
  if (bytes > 0) {
    auto after = live_extents_.lower_bound(begin);
    auto clash = [&](ValueId o) {
      return absl::InternalError(absl::StrCat(
          "check-plan: ", Describe(v), " planned at [", begin, ", ", end, ") overlaps ",
          Describe(o), " at [", plan_.offset[o], ", ", plan_.offset[o] + PlannedBytes(graph_.value(o)),
          "), live at ", DescribeNode(index), " (intervals [", first, ", ", last, "] and [",
          plan_.live[o].first, ", ", plan_.live[o].second, "])"));
    };
    if (after != live_extents_.end() && after->first < end) return clash(after->second);
    if (after != live_extents_.begin()) {
      const ValueId o = std::prev(after)->second;
      if (plan_.offset[o] + PlannedBytes(graph_.value(o)) > begin) return clash(o);
    }
  }
  STRATA_ASSIGN_OR_RETURN(blocks_[v], arena_allocator_->Allocate(bytes, kPlanAlignment));
  Allocation& block = blocks_[v];
  if (bytes > 0) {
    live_extents_[begin] = v;
    FillNaN(block.data(), bytes);
    Poison(static_cast<char*>(block.data()) + value.nbytes(), bytes - value.nbytes());
  }
  return absl::OkStatus();
}

void Program::Release(ValueId v) {
  Allocation& block = blocks_[v];
  if (block.size() > 0) {
    Unpoison(block.data(), block.size());
    FillNaN(block.data(), block.size());  // a stale pointer reads NaN until the block is reused
    live_extents_.erase(plan_.offset[v]);
  }
  block.Reset();
  live_[v] = false;
  static const Tensor kUnbound;  // a copy, not a moved temporary: GCC 12 warns on the latter
  tensors_[v] = kUnbound;
}

int Program::ReleaseAll() {
  int released = 0;
  for (ValueId v = 0; v < graph_.num_values(); ++v) {
    if (config_.check_plan && live_[v]) {
      Release(v);
      ++released;
    }
  }
  return released;
}

absl::Status Program::RunChecked(int index) {
  Instruction& ins = instructions_[index];
  const Node& n = *ins.node;
  for (ValueId v : born_at_[index]) STRATA_RETURN_IF_ERROR(Allocate(v, index));
  auto bind = [&](ValueId v, Tensor& slot) -> absl::Status {
    if (v == kNoValue || IsPersistent(graph_.value(v).role)) return absl::OkStatus();
    if (!live_[v]) {
      return absl::InternalError(absl::StrCat(
          "check-plan: ", DescribeNode(index), " uses ", Describe(v),
          " outside its planned live interval [", plan_.live[v].first, ", ", plan_.live[v].second,
          "]"));
    }
    slot = tensors_[v];
    return absl::OkStatus();
  };
  for (size_t j = 0; j < n.inputs.size(); ++j) STRATA_RETURN_IF_ERROR(bind(n.inputs[j], ins.in[j]));
  for (size_t j = 0; j < n.outputs.size(); ++j) STRATA_RETURN_IF_ERROR(bind(n.outputs[j], ins.out[j]));
  if (n.workspace != kNoValue) {
    Tensor w;
    STRATA_RETURN_IF_ERROR(bind(n.workspace, w));
    ins.workspace = absl::MakeSpan(w.data<float>(), w.numel());
  }
  STRATA_RETURN_IF_ERROR(BindShardedUpdate(n, ins));
  STRATA_RETURN_IF_ERROR(Run(ins));
  for (ValueId v : dead_after_[index]) Release(v);
  return absl::OkStatus();
}

// As if each rank held consecutive rows of the global batch (Note [data parallel] in compile.cc), the
// same number on every rank (Note [same program on every rank]).
int64_t Program::GlobalMicroBatch(int i) const {
  const int rank = config_.communicator != nullptr ? config_.communicator->rank() : 0;
  const int world = config_.communicator != nullptr ? config_.communicator->world_size() : 1;
  return static_cast<int64_t>(i) * world + rank;
}

absl::Status Program::RunMicroBatches(absl::Span<const Tensor> batch, double* loss_sum) {
  const Tensor& loss = tensors_[config_.loss];
  const int k = config_.micro_batches;
  for (int i = 0; i < k; ++i) {
    STRATA_RETURN_IF_ERROR(LoadMicroBatch(batch, i));
    scalars_.micro_batch = GlobalMicroBatch(i);
    // One micro-batch: every node in order (updates were scheduled among them); more: the
    // update phase runs once after the last.
    STRATA_RETURN_IF_ERROR(RunPhase(Phase::kMicroStep, /*all=*/k == 1));
    STRATA_ASSIGN_OR_RETURN(const float l, ReadFloat(loss));
    *loss_sum += l;
  }
  if (k > 1) STRATA_RETURN_IF_ERROR(RunPhase(Phase::kUpdate, false));
  if (!tail_.entries.empty()) {  // this step's tail runs in the next one, as this step's
    pending_ = true;
    deferred_scalars_ = scalars_;
    if (config_.grad_norm != kNoValue) {
      STRATA_ASSIGN_OR_RETURN(deferred_norm_, ReadFloat(tensors_[config_.grad_norm]));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StepStats> Program::Step(absl::Span<const Tensor> batch) {
  STRATA_RETURN_IF_ERROR(CheckBatch(batch));
  const auto start = std::chrono::steady_clock::now();
  for (MemoryTier t : kAllMemoryTiers) ledger_.ResetPeak(t);
  io_wait_ms_ = 0;
  TierBytes read_before{}, written_before{};
  for (MemoryTier t : kAllMemoryTiers) {
    if (store_ == nullptr) break;
    read_before[static_cast<int>(t)] = store_->read_bytes(t);
    written_before[static_cast<int>(t)] = store_->write_bytes(t);
  }
  scalars_.step = step_count_ + 1;
  scalars_.lr = config_.schedule.At(step_count_);
  scalars_.training = true;
  if (scaler_) {  // Note [mixed precision]: the seed carries this step's scale
    scalars_.loss_scale = scaler_->scale();
    const Tensor& seed = tensors_[config_.loss_seed];
    if (!seed.defined()) return absl::InternalError("loss scale: the loss seed has no bytes");
    float value = config_.loss_seed_value * scalars_.loss_scale;
    if (device_ == nullptr) {
      seed.data<float>()[0] = value;  // no wrapping tensor: a step allocates nothing on the CPU
    } else {
      STRATA_RETURN_IF_ERROR(
          Copy(seed, Tensor::Wrap(&value, seed.shape(), DType::kF32, Device::Cpu())));
    }
  }
  double loss_sum = 0;
  const int k = config_.micro_batches;
  collectives::Communicator* comm = config_.communicator;
  const int64_t sent_before = comm != nullptr ? comm->bytes_sent() : 0;
  const absl::Status run = RunMicroBatches(batch, &loss_sum);
  const int64_t comm_bytes = comm != nullptr ? comm->bytes_sent() - sent_before : 0;
  // With check_plan every value's interval ends inside the step; a failed step leaves some live.
  const int left = ReleaseAll();
  STRATA_RETURN_IF_ERROR(run);
  if (left > 0) {
    return absl::InternalError(absl::StrCat("check-plan: ", left,
                                            " arena values were still live after the step"));
  }
  StepStats s;
  if (scaler_) {
    // Not finite exactly when a gradient overflowed; then every update did nothing.
    STRATA_ASSIGN_OR_RETURN(const float norm, ReadFloat(tensors_[config_.grad_norm]));
    s.skipped = !std::isfinite(norm);
    s.loss_scale = scalars_.loss_scale;
    scaler_->Update(s.skipped);
  }
  if (!s.skipped) ++step_count_;  // a skipped step is no optimizer step (Note [mixed precision])
  if (profiling_) ++profiled_steps_;

  s.step = step_count_;
  STRATA_ASSIGN_OR_RETURN(loss_sum, SumOverRanks(loss_sum));
  s.world_size = comm != nullptr ? comm->world_size() : 1;
  s.comm_bytes = comm_bytes;
  s.loss = loss_sum / (k * s.world_size);
  s.lr = scalars_.lr;
  if (config_.grad_norm != kNoValue) {
    STRATA_ASSIGN_OR_RETURN(const float norm, ReadFloat(tensors_[config_.grad_norm]));
    s.grad_norm = norm / s.loss_scale;
  }
  s.step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const double samples = static_cast<double>(batch.empty() || batch[0].rank() == 0 ? 1 : batch[0].dim(0));
  s.samples_per_s = samples / (s.step_ms / 1e3);
  const double seq = batch.empty() || batch[0].rank() < 2 ? 1.0 : static_cast<double>(batch[0].dim(1));
  s.tokens_per_s = s.samples_per_s * seq;
  for (MemoryTier t : kAllMemoryTiers) s.peak_bytes[static_cast<int>(t)] = ledger_.usage(t).peak;
  s.io_wait_ms = io_wait_ms_;
  for (MemoryTier t : kAllMemoryTiers) {
    if (store_ == nullptr) break;
    const int i = static_cast<int>(t);
    s.io_read_bytes[i] = store_->read_bytes(t) - read_before[i];
    s.io_write_bytes[i] = store_->write_bytes(t) - written_before[i];
  }
  return s;
}

std::string Program::ProfileReport() const {
  std::map<std::string, double> by_op;
  double total = 0;
  for (size_t i = 0; i < instructions_.size(); ++i) {
    by_op[instructions_[i].op->name()] += node_ms_[i];
    total += node_ms_[i];
  }
  std::vector<std::pair<double, std::string>> rows;
  for (const auto& [name, ms] : by_op) rows.push_back({ms, name});
  std::sort(rows.rbegin(), rows.rend());
  const double steps = std::max<int64_t>(profiled_steps_, 1);
  std::string s = absl::StrCat("per-op time over ", profiled_steps_, " steps (ms per step):\n");
  for (const auto& [ms, name] : rows) {
    absl::StrAppend(&s, absl::StrFormat("  %-26s %9.2f  %5.1f%%\n", name, ms / steps,
                                        total > 0 ? 100 * ms / total : 0.0));
  }
  absl::StrAppend(&s, absl::StrFormat("  %-26s %9.2f\n", "total", total / steps));
  return s;
}

absl::StatusOr<double> Program::Evaluate(absl::Span<const Tensor> batch) {
  STRATA_RETURN_IF_ERROR(CheckBatch(batch));
  STRATA_RETURN_IF_ERROR(Flush());
  // The nodes the loss depends on, none of which writes anything in place outside training.
  std::vector<bool> needed(graph_.num_values(), false);
  needed[config_.loss] = true;
  std::vector<const Instruction*> slice;
  for (int i = static_cast<int>(instructions_.size()) - 1; i >= 0; --i) {
    const Node& n = *instructions_[i].node;
    bool k = false;
    for (ValueId v : n.outputs) k = k || (v != kNoValue && needed[v]);
    if (!k) continue;
    if (!n.op->MutatedInputs().empty() && !n.op->MutatesOnlyWhenTraining()) {
      return absl::InternalError(absl::StrCat("evaluate: the loss depends on ", n.op->name(),
                                              ", which writes in place"));
    }
    for (ValueId v : n.inputs) needed[v] = true;
    slice.push_back(&instructions_[i]);
  }
  scalars_.training = false;
  double loss_sum = 0;
  for (int m = 0; m < config_.micro_batches; ++m) {
    STRATA_RETURN_IF_ERROR(LoadMicroBatch(batch, m));
    scalars_.micro_batch = GlobalMicroBatch(m);
    int skipped_from = 0;  // nodes before the next slice node that the slice does not run
    for (auto it = slice.rbegin(); it != slice.rend(); ++it) {
      const int index = static_cast<int>(*it - instructions_.data());
      // check_plan: a value whose interval ends at a node outside the slice (a write-back's
      // source) is freed where the planned run would have freed it.
      for (; config_.check_plan && skipped_from < index; ++skipped_from) {
        for (ValueId v : dead_after_[skipped_from]) {
          if (live_[v]) Release(v);
        }
      }
      skipped_from = index + 1;
      const absl::Status s = config_.check_plan ? RunChecked(index) : Run(**it);
      if (!s.ok()) {
        ReleaseAll();
        return s;
      }
    }
    // Values saved for the backward, which this slice does not run, are still live.
    ReleaseAll();
    STRATA_ASSIGN_OR_RETURN(const float l, ReadFloat(tensors_[config_.loss]));
    loss_sum += l;
  }
  const int world = config_.communicator != nullptr ? config_.communicator->world_size() : 1;
  STRATA_ASSIGN_OR_RETURN(loss_sum, SumOverRanks(loss_sum));
  return loss_sum / (config_.micro_batches * world);
}

absl::StatusOr<double> Program::SumOverRanks(double local) {
  collectives::Communicator* comm = config_.communicator;
  if (comm == nullptr || comm->world_size() == 1) return local;
  if (!loss_sum_.defined()) {
    // Outside the program's ledger: its measured peak stays the plan's.
    STRATA_ASSIGN_OR_RETURN(loss_sum_, Tensor::Empty(Shape{1}, DType::kF32, DefaultCpuAllocator()));
  }
  loss_sum_.data<float>()[0] = static_cast<float>(local);
  STRATA_RETURN_IF_ERROR(comm->Blocking().AllReduce(loss_sum_));
  return loss_sum_.data<float>()[0];
}

// Note [same program on every rank]
// A data-parallel job whose ranks compiled different programs (another model, batch, placement
// or optimizer: a flag given to one rank only, a stale binary on one node) would deadlock or
// silently diverge at the first collective. So Create compares a fingerprint of each of those
// fields with rank 0's, and every rank fails, naming the fields that differ, if any rank's does.
absl::Status Program::CheckSameProgramOnEveryRank() {
  collectives::Communicator* comm = config_.communicator;
  if (comm == nullptr || comm->world_size() == 1) return absl::OkStatus();
  std::vector<std::pair<std::string, std::string>> fields(5);
  fields[0].first = "model (parameter paths and shapes)";
  for (const Config::Param& p : config_.params) {
    absl::StrAppend(&fields[0].second, p.path, graph_.value(p.value).type.ToString(), p.init_kind,
                    ",", p.a, ",", p.b, p.trainable ? "t;" : "f;");
  }
  absl::StrAppend(&fields[0].second, "seed ", config_.seed);
  fields[1].first = "batch (input shapes, micro-batches)";
  for (const InputSpec& in : config_.inputs) {
    absl::StrAppend(&fields[1].second, in.name, DTypeName(in.dtype), in.shape.ToString(), ";");
  }
  absl::StrAppend(&fields[1].second, config_.micro_batches);
  fields[2].first = "placement (--offload-*, budgets, prefetch)";
  const OffloadOptions& o = config_.offload;
  absl::StrAppend(&fields[2].second, MemoryTierName(o.params), MemoryTierName(o.grads),
                  MemoryTierName(o.optimizer), MemoryTierName(o.activations), o.device_bytes, ",",
                  o.host_bytes, ",", o.prefetch_bytes);
  fields[3].first = "optimizer, clipping and schedule";
  for (const Node& n : graph_.nodes()) {
    if (IsOptimizerUpdate(n)) absl::StrAppend(&fields[3].second, n.op->Attributes(), ";");
  }
  const optim::LrSchedule& lr = config_.schedule;
  absl::StrAppend(&fields[3].second, static_cast<int>(lr.kind), ",", lr.max_lr, ",", lr.min_lr, ",",
                  lr.warmup_steps, ",", lr.total_steps);
  fields[4].first = "ZeRO (stage, persistence threshold, reuse, buckets)";
  absl::StrAppend(&fields[4].second, config_.zero.stage, ",", config_.zero.persistence_threshold,
                  ",", config_.zero.reuse_bytes, ",", config_.zero.bucket_bytes);
  const int f = static_cast<int>(fields.size());
  STRATA_ASSIGN_OR_RETURN(Tensor mine, Tensor::Empty(Shape{2 * f}, DType::kI32, DefaultCpuAllocator()));
  for (int i = 0; i < f; ++i) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : fields[i].second) h = (h ^ c) * 1099511628211ull;
    std::memcpy(mine.data<int32_t>() + 2 * i, &h, sizeof(h));
  }
  STRATA_ASSIGN_OR_RETURN(Tensor first, Tensor::Empty(Shape{2 * f}, DType::kI32, DefaultCpuAllocator()));
  STRATA_RETURN_IF_ERROR(first.CopyFrom(mine));
  STRATA_RETURN_IF_ERROR(comm->Blocking().Broadcast(first, 0));
  STRATA_ASSIGN_OR_RETURN(Tensor differ, Tensor::Empty(Shape{f}, DType::kI32, DefaultCpuAllocator()));
  for (int i = 0; i < f; ++i) {
    differ.data<int32_t>()[i] = std::memcmp(mine.data<int32_t>() + 2 * i,
                                            first.data<int32_t>() + 2 * i, 8) != 0;
  }
  STRATA_RETURN_IF_ERROR(comm->Blocking().AllReduce(differ));
  std::string wrong;
  for (int i = 0; i < f; ++i) {
    const int ranks = differ.data<int32_t>()[i];
    if (ranks == 0) continue;
    absl::StrAppend(&wrong, wrong.empty() ? "" : "; ", fields[i].first, ": ", ranks, " of ",
                    comm->world_size(), " ranks differ from rank 0",
                    std::memcmp(mine.data<int32_t>() + 2 * i, first.data<int32_t>() + 2 * i, 8) != 0
                        ? absl::StrCat(" (this rank, ", comm->rank(), ", is one)")
                        : "");
  }
  if (wrong.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "data parallel: the ranks compiled different programs (", wrong,
      "); start every rank with the same flags and data shapes"));
}

}  // namespace strata::graph
