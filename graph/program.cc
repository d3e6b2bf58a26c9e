#include "graph/program.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/status.h"
#include "runtime/threading.h"

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

}  // namespace

std::string MemoryReport::ToString() const {
  std::string s = "planned peak:";
  for (MemoryTier t : kAllMemoryTiers) {
    absl::StrAppend(&s, " ", MemoryTierName(t), " ", planned_peak[static_cast<int>(t)], " B");
  }
  absl::StrAppend(&s, " (persistent ", persistent_bytes, " B, arena ", arena_bytes,
                  " B, largest live set ", live_peak_bytes, " B)");
  return s;
}

Program::Program(Graph graph, MemoryPlan plan, Config config)
    : graph_(std::move(graph)), plan_(std::move(plan)), config_(std::move(config)) {}

absl::StatusOr<std::unique_ptr<Program>> Program::Create(Graph graph, MemoryPlan plan,
                                                         Config config) {
  std::unique_ptr<Program> p(new Program(std::move(graph), std::move(plan), std::move(config)));
  STRATA_RETURN_IF_ERROR(p->Bind());
  p->InitializeParameters();
  return p;
}

absl::Status Program::Bind() {
  // On a CPU build both regions are the compute tier (DESIGN.md, "Execution model").
  allocator_ = std::make_unique<HostAllocator>(MemoryTier::kDevice, &ledger_, "program");
  STRATA_ASSIGN_OR_RETURN(persistent_,
                          allocator_->Allocate(std::max<int64_t>(plan_.persistent_bytes, 1),
                                               kIoAlignment));
  STRATA_ASSIGN_OR_RETURN(arena_, allocator_->Allocate(std::max<int64_t>(plan_.arena_bytes, 1),
                                                       kIoAlignment));
  std::memset(persistent_.data(), 0, persistent_.size());
  auto persistent = std::make_shared<Storage>(persistent_.data(), persistent_.size(), Device::Cpu());
  auto arena = std::make_shared<Storage>(arena_.data(), arena_.size(), Device::Cpu());

  tensors_.assign(graph_.num_values(), Tensor());
  for (ValueId v = 0; v < graph_.num_values(); ++v) {
    if (plan_.offset[v] < 0) continue;
    const Value& value = graph_.value(v);
    const size_t elem = SizeOf(value.type.dtype);
    STRATA_ASSIGN_OR_RETURN(
        tensors_[v],
        Tensor::View(IsPersistent(value.role) ? persistent : arena, value.type.shape,
                     ContiguousStrides(value.type.shape),
                     plan_.offset[v] / static_cast<int64_t>(elem), value.type.dtype));
  }
  for (const auto& [v, bytes] : graph_.constants()) {
    if (tensors_[v].defined()) std::memcpy(tensors_[v].raw_data(), bytes.data(), bytes.size());
  }
  for (const Node& n : graph_.nodes()) {
    Instruction ins{n.op.get(), {}, {}, {}, n.phase, &n};
    for (ValueId v : n.inputs) ins.in.push_back(tensors_[v]);
    for (ValueId v : n.outputs) ins.out.push_back(v == kNoValue ? Tensor() : tensors_[v]);
    if (n.workspace != kNoValue) {
      const Tensor& w = tensors_[n.workspace];
      ins.workspace = absl::MakeSpan(w.data<float>(), w.numel());
    }
    has_update_phase_ = has_update_phase_ || n.phase == Phase::kUpdate;
    instructions_.push_back(std::move(ins));
  }
  node_ms_.assign(instructions_.size(), 0.0);
  for (const Config::Param& p : config_.params) named_params_.push_back({p.path, tensors_[p.value]});
  for (const auto& [name, v] : config_.gradients) named_grads_.push_back({name, tensors_[v]});
  for (const auto& [name, v] : config_.optimizer_state) {
    if (tensors_[v].defined()) named_state_.push_back({name, tensors_[v]});
  }
  return absl::OkStatus();
}

void Program::InitializeParameters() {
  for (const Config::Param& p : config_.params) {
    const Tensor& t = tensors_[p.value];
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
  }
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

MemoryReport Program::memory_report() const {
  MemoryReport r;
  r.persistent_bytes = static_cast<int64_t>(persistent_.size());
  r.arena_bytes = static_cast<int64_t>(arena_.size());
  r.live_peak_bytes = plan_.live_peak_bytes;
  r.planned_peak[static_cast<int>(MemoryTier::kDevice)] = r.persistent_bytes + r.arena_bytes;
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
  }
  return absl::OkStatus();
}

absl::Status Program::LoadMicroBatch(absl::Span<const Tensor> batch, int index) {
  for (size_t i = 0; i < batch.size(); ++i) {
    const Tensor& dst = tensors_[config_.input_values[i]];
    if (!dst.defined()) continue;  // an input the loss does not use
    const char* src = static_cast<const char*>(batch[i].raw_data()) + index * dst.nbytes();
    std::memcpy(dst.raw_data(), src, dst.nbytes());
  }
  return absl::OkStatus();
}

absl::Status Program::Run(const Instruction& ins) {
  const auto start = profiling_ ? std::chrono::steady_clock::now()
                                : std::chrono::steady_clock::time_point();
  const absl::Status s = ins.op->Run(RunArgs{ins.in, ins.out, ins.workspace, &scalars_});
  if (profiling_) {
    node_ms_[&ins - instructions_.data()] +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(ins.node->scope.empty() ? "" : ins.node->scope + ": ",
                                             s.message()));
}

absl::Status Program::RunPhase(Phase phase, bool all) {
  for (const Instruction& ins : instructions_) {
    if (all || ins.phase == phase) STRATA_RETURN_IF_ERROR(Run(ins));
  }
  return absl::OkStatus();
}

absl::StatusOr<StepStats> Program::Step(absl::Span<const Tensor> batch) {
  STRATA_RETURN_IF_ERROR(CheckBatch(batch));
  const auto start = std::chrono::steady_clock::now();
  ledger_.ResetPeak(MemoryTier::kDevice);
  scalars_.step = step_count_ + 1;
  scalars_.lr = config_.schedule.At(step_count_);
  scalars_.training = true;
  const float* loss = tensors_[config_.loss].data<float>();
  double loss_sum = 0;
  const int k = config_.micro_batches;
  for (int i = 0; i < k; ++i) {
    STRATA_RETURN_IF_ERROR(LoadMicroBatch(batch, i));
    // One micro-batch: every node in order (updates were scheduled among them); more: the
    // update phase runs once after the last.
    STRATA_RETURN_IF_ERROR(RunPhase(Phase::kMicroStep, /*all=*/k == 1));
    loss_sum += *loss;
  }
  if (k > 1) STRATA_RETURN_IF_ERROR(RunPhase(Phase::kUpdate, false));
  ++step_count_;
  if (profiling_) ++profiled_steps_;

  StepStats s;
  s.step = step_count_;
  s.loss = loss_sum / k;
  s.lr = scalars_.lr;
  if (config_.grad_norm != kNoValue) s.grad_norm = tensors_[config_.grad_norm].data<float>()[0];
  s.step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const double samples = static_cast<double>(batch.empty() || batch[0].rank() == 0 ? 1 : batch[0].dim(0));
  s.samples_per_s = samples / (s.step_ms / 1e3);
  const double seq = batch.empty() || batch[0].rank() < 2 ? 1.0 : static_cast<double>(batch[0].dim(1));
  s.tokens_per_s = s.samples_per_s * seq;
  for (MemoryTier t : kAllMemoryTiers) s.peak_bytes[static_cast<int>(t)] = ledger_.usage(t).peak;
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
    for (auto it = slice.rbegin(); it != slice.rend(); ++it) STRATA_RETURN_IF_ERROR(Run(**it));
    loss_sum += tensors_[config_.loss].data<float>()[0];
  }
  return loss_sum / config_.micro_batches;
}

}  // namespace strata::graph
