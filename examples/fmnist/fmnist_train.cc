#include "examples/fmnist/fmnist_train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "graph/op.h"
#include "graph/ops/ops.h"
#include "graph/sparse_budget.h"
#include "runtime/safetensors.h"
#include "runtime/status.h"

namespace strata::examples {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

graph::TrainOptions StepOptions(const FmnistRecipe& r, int64_t total_steps,
                                collectives::Communicator* comm) {
  graph::TrainOptions o;
  o.optimizer = r.optimizer == "adamw"
                    ? graph::OptimizerOptions::AdamW(0.9, 0.999, 1e-8, r.resolved_weight_decay())
                    : graph::OptimizerOptions::Sgd(0.9, r.resolved_weight_decay());
  o.optimizer.groups = r.param_groups;
  o.schedule.kind = r.schedule == "cosine" ? optim::LrSchedule::kCosine
                                           : optim::LrSchedule::kConstant;
  o.schedule.max_lr = r.resolved_lr();
  o.schedule.min_lr = 0;
  o.schedule.warmup_steps = r.warmup_steps;
  o.schedule.total_steps = total_steps;
  o.clip_grad_norm = r.clip_grad_norm;
  o.seed = r.seed;
  o.check_plan = r.check_plan;
  o.device = r.device;
  o.offload = r.offload;
  o.recompute = r.recompute;
  o.communicator = comm;
  o.zero = r.zero;
  return o;
}

std::vector<graph::InputSpec> StepInputs(int64_t rows) {
  return {{"images", Shape{rows, 1, kFashionMnistSide, kFashionMnistSide}, DType::kF32},
          {"labels", Shape{rows}, DType::kI32}};
}

// Cross-entropy of the model's logits, which are marked as an output (read by Test) and whose
// value id goes to `logits_id` when it is not null.
graph::LossFn LossOf(graph::MobileNet& model, graph::ValueId* logits_id) {
  return [&model, logits_id](absl::Span<const graph::Var> in) {
    graph::Var logits = model.Forward(in[0]);
    in[0].tracer()->MarkOutput(logits, "logits");
    if (logits_id != nullptr) *logits_id = logits.id();
    return graph::ops::CrossEntropy(logits, in[1]);
  };
}

}  // namespace

absl::Status FmnistRecipe::Validate(int64_t train_size) const {
  auto bad = [](const char* field, auto value, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("--", field, " = ", value, ": ", why));
  };
  if (epochs < 1) return bad("epochs", epochs, "must be >= 1");
  if (batch < 1) return bad("batch", batch, "must be >= 1");
  if (optimizer != "sgd" && optimizer != "adamw") {
    return bad("optimizer", optimizer, "expected sgd or adamw");
  }
  if (!(lr >= 0)) return bad("lr", lr, "must be >= 0 (0: the optimizer's default)");
  if (schedule != "cosine" && schedule != "constant") {
    return bad("schedule", schedule, "expected cosine or constant");
  }
  if (warmup_steps < 0) return bad("warmup", warmup_steps, "must be >= 0");
  if (!(clip_grad_norm >= 0)) return bad("clip", clip_grad_norm, "must be >= 0 (0: off)");
  if (limit_train < 0) return bad("limit-train", limit_train, "must be >= 0");
  if (limit_test < 0) return bad("limit-test", limit_test, "must be >= 0");
  if (init_images < 0) return bad("init-images", init_images, "must be >= 0 (0: off)");
  if (init_images > 0 && !device.is_cpu()) {
    // The scaling reads activations and writes weights in the program's memory directly.
    return bad("init-images", init_images, absl::StrCat("runs on the CPU only, not on ",
                                                        device.ToString()));
  }
  for (size_t i = 0; i < classes.size(); ++i) {
    if (classes[i] < 0 || classes[i] > 9) return bad("classes", classes[i], "is not a label 0-9");
    for (size_t j = 0; j < i; ++j) {
      if (classes[j] == classes[i]) return bad("classes", classes[i], "is given twice");
    }
  }
  const int64_t n = limit_train > 0 ? std::min(limit_train, train_size) : train_size;
  if (n < batch) {
    return bad("batch", batch, absl::StrCat("is more than the ", n, " training images"));
  }
  if (const int64_t steps = n / batch * epochs; warmup_steps >= steps) {
    return bad("warmup", warmup_steps,
               absl::StrCat("must be less than the run's ", steps, " steps"));
  }
  return absl::OkStatus();
}

double FmnistRecipe::resolved_lr() const {
  if (lr > 0) return lr;
  return optimizer == "adamw" ? 1e-3 : 0.05;
}

double FmnistRecipe::resolved_weight_decay() const {
  if (weight_decay >= 0) return weight_decay;
  return optimizer == "adamw" ? 0.01 : 5e-4;
}

FmnistTrainer::FmnistTrainer(const FashionMnist& data, const FmnistRecipe& recipe,
                             collectives::Communicator* comm)
    : data_(data),
      recipe_(recipe),
      comm_(comm),
      world_(comm != nullptr ? comm->world_size() : 1),
      rank_(comm != nullptr ? comm->rank() : 0),
      rng_(recipe.seed) {}

absl::StatusOr<std::unique_ptr<FmnistTrainer>> FmnistTrainer::Create(
    const FashionMnist& data, const FmnistRecipe& recipe, collectives::Communicator* comm) {
  STRATA_RETURN_IF_ERROR(recipe.Validate(data.train.size()));
  std::unique_ptr<FmnistTrainer> t(new FmnistTrainer(data, recipe, comm));
  const FmnistRecipe& r = t->recipe_;
  if (r.batch % t->world_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--batch ", r.batch, " does not split among ", t->world_, " ranks: each rank reads --batch / ",
        t->world_, " images of every batch, so give a multiple of ", t->world_));
  }
  const int64_t mine = r.batch / t->world_;
  auto pool = [&](const FashionMnistSplit& split, int64_t limit) {
    std::vector<int64_t> p;
    for (int64_t i = 0; i < split.size(); ++i) {
      if (r.classes.empty() || std::find(r.classes.begin(), r.classes.end(),
                                         split.labels[i]) != r.classes.end()) {
        p.push_back(i);
      }
    }
    if (limit > 0 && static_cast<int64_t>(p.size()) > limit) p.resize(limit);
    return p;
  };
  t->train_pool_ = pool(data.train, r.limit_train);
  t->test_pool_ = pool(data.test, r.limit_test);
  t->train_size_ = static_cast<int64_t>(t->train_pool_.size());
  if (t->train_size_ < r.batch || t->test_pool_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--classes ", absl::StrJoin(r.classes, ","), ": ", t->train_size_,
        " training images and ", t->test_pool_.size(), " test images, fewer than a batch (",
        r.batch, ") or none"));
  }
  t->model_ = std::make_unique<graph::MobileNet>(graph::MobileNetConfig{});
  if (r.sparse_update) {
    STRATA_ASSIGN_OR_RETURN(t->sparse_plan_, graph::ApplySparseUpdate(*t->model_, *r.sparse_update));
  }
  {
    // Resolved here as well as in Compile, so that a pattern that takes nothing is refused as
    // the flag it came from (and the plan is there for the startup summary).
    const graph::TrainOptions o = StepOptions(r, t->total_steps(), comm);
    absl::StatusOr<graph::ParamGroupPlan> groups = graph::ResolveParamGroups(*t->model_, o.optimizer);
    if (!groups.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--param-group: ", groups.status().message()));
    }
    t->param_groups_ = *std::move(groups);
  }

  graph::MobileNet* model = t->model_.get();
  graph::ValueId* logits_id = &t->logits_;
  STRATA_ASSIGN_OR_RETURN(
      t->program_,
      graph::Compile(*model, StepInputs(mine), LossOf(*model, logits_id),
                     StepOptions(r, t->total_steps(), comm)));

  STRATA_ASSIGN_OR_RETURN(
      t->images_, Tensor::Empty(Shape{mine, 1, kFashionMnistSide, kFashionMnistSide},
                                DType::kF32, DefaultCpuAllocator()));
  STRATA_ASSIGN_OR_RETURN(t->labels_,
                          Tensor::Empty(Shape{mine}, DType::kI32, DefaultCpuAllocator()));
  STRATA_ASSIGN_OR_RETURN(t->counts_, Tensor::Empty(Shape{2}, DType::kF32, DefaultCpuAllocator()));
  t->order_.resize(t->train_size_);
  t->indices_.resize(r.batch);
  t->mine_.resize(mine);
  if (r.init_images > 0) STRATA_RETURN_IF_ERROR(t->ScaleConvolutions(r.init_images));
  if (!r.init_from.empty()) STRATA_RETURN_IF_ERROR(t->LoadWeights(r.init_from));
  return t;
}

absl::Status FmnistTrainer::LoadWeights(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "weights.safetensors").string();
  STRATA_ASSIGN_OR_RETURN(const SafetensorsFile file,
                          SafetensorsFile::Read(path, DefaultCpuAllocator()));
  for (const auto& [name, value] : program_->parameter_values()) {
    absl::StatusOr<Tensor> t = file.Get(name);
    if (!t.ok()) {
      return absl::Status(t.status().code(), absl::StrCat("--finetune ", dir, ": ",
                                                          t.status().message()));
    }
    if (t->shape() != program_->graph().value(value).type.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--finetune ", dir, ": ", name, " is ", t->shape().ToString(), " in ", path,
          ", the model's is ", program_->graph().value(value).type.shape.ToString()));
    }
    STRATA_RETURN_IF_ERROR(program_->WriteState(value, *t));
  }
  return absl::OkStatus();
}

void FmnistTrainer::FillMine(const FashionMnistSplit& split, absl::Span<const int64_t> global) {
  const int64_t mine = static_cast<int64_t>(mine_.size());
  std::copy_n(global.begin() + rank_ * mine, mine, mine_.begin());
  FillBatch(split, mine_, images_, labels_);
}

// Note [data-dependent initialization]
// With frozen BatchNorms (running statistics that training never updates; at their initial
// mean 0 and variance 1 they are identities) and torchvision's fan-out initialization each
// depthwise convolution (fan-in 9, fan-out 9 * channels) shrinks its input's variance by about
// its channel count, so the logits start near zero, plain SGD sits on the ln 10 plateau for
// hundreds of steps, and two epochs ended between 75% and 88.5% test accuracy depending on the
// seed and even the thread count. LSUV (Mishkin & Matas, "All you need is a good init", 2016)
// helped there: each convolution's weight is scaled, in forward order (a layer's input depends on
// the ones before it), so that its output has unit variance on a few training batches. A second
// program of the same model, with every convolution output marked as an output, runs the
// forwards (in evaluation mode, so the BatchNorms use their running statistics); it is dropped
// afterwards. The recipe now trains the BatchNorms in training mode, which normalize with batch
// statistics and make the forward independent of the weights' scale, so LSUV is off by default
// (--init-images 0); it is kept for models with frozen BatchNorms.
absl::Status FmnistTrainer::ScaleConvolutions(int64_t images) {
  struct Conv {
    graph::ValueId y;
    std::string weight;  // parameter path
  };
  std::vector<Conv> convs;
  graph::TrainOptions o;
  o.optimizer = graph::OptimizerOptions::Sgd(/*momentum=*/0, /*weight_decay=*/0);
  o.check_plan = recipe_.check_plan;
  graph::MobileNet* model = model_.get();
  const int64_t b = recipe_.batch;
  STRATA_ASSIGN_OR_RETURN(
      std::unique_ptr<graph::Program> p,
      graph::Compile(
          *model,
          {{"images", Shape{b, 1, kFashionMnistSide, kFashionMnistSide}, DType::kF32},
           {"labels", Shape{b}, DType::kI32}},
          [&](absl::Span<const graph::Var> in) {
            graph::Var logits = model->Forward(in[0]);
            graph::Tracer* t = in[0].tracer();
            for (const graph::Node& n : t->graph().nodes()) {
              if (n.op->kind() == graph::OpKind::kConv2d) {
                convs.push_back({n.outputs[0], t->graph().value(n.inputs[1]).name});
              }
            }
            for (const Conv& c : convs) t->MarkOutput(t->Wrap(c.y));
            return graph::ops::CrossEntropy(logits, in[1]);
          },
          o));
  for (size_t i = 0; i < p->parameters().size(); ++i) {
    const auto& [path, t] = p->parameters()[i];
    STRATA_ASSIGN_OR_RETURN(const Tensor from,
                            program_->ReadState(program_->parameter_values()[i].second,
                                                DefaultCpuAllocator()));
    STRATA_RETURN_IF_ERROR(t.CopyFrom(from));
  }
  // The whole batch on every rank (the same bytes, so the same scaled weights everywhere).
  STRATA_ASSIGN_OR_RETURN(
      const Tensor batch_images,
      Tensor::Empty(Shape{b, 1, kFashionMnistSide, kFashionMnistSide}, DType::kF32,
                    DefaultCpuAllocator()));
  STRATA_ASSIGN_OR_RETURN(const Tensor batch_labels,
                          Tensor::Empty(Shape{b}, DType::kI32, DefaultCpuAllocator()));
  const int64_t batches = std::max<int64_t>(1, std::min(images, train_size_) / b);
  for (const Conv& c : convs) {
    STRATA_ASSIGN_OR_RETURN(const Tensor y, p->value(c.y));
    STRATA_ASSIGN_OR_RETURN(const Tensor w, p->parameter(c.weight));
    double sum = 0, sum_sq = 0;
    for (int64_t k = 0; k < batches; ++k) {
      for (int64_t r = 0; r < b; ++r) indices_[r] = train_pool_[(k * b + r) % train_size_];
      FillBatch(data_.train, indices_, batch_images, batch_labels);
      STRATA_RETURN_IF_ERROR(p->Evaluate({batch_images, batch_labels}).status());
      const float* v = y.data<float>();
      for (int64_t i = 0; i < y.numel(); ++i) {
        sum += v[i];
        sum_sq += double{v[i]} * v[i];
      }
    }
    const double count = static_cast<double>(batches * y.numel());
    const double mean = sum / count, var = sum_sq / count - mean * mean;
    if (!(var > 0)) continue;  // a dead layer: leave it as it is
    const float scale = static_cast<float>(1.0 / std::sqrt(var));
    float* d = w.data<float>();
    for (int64_t i = 0; i < w.numel(); ++i) d[i] *= scale;
    bool written = false;
    for (const auto& [path, value] : program_->parameter_values()) {
      if (path != c.weight) continue;
      STRATA_RETURN_IF_ERROR(program_->WriteState(value, w));
      written = true;
    }
    if (!written) return absl::NotFoundError(absl::StrCat("LSUV: no parameter ", c.weight));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> PlanFmnistStep(const FmnistRecipe& recipe, int64_t train_size,
                                       const graph::SparseUpdateSpec& spec, int world) {
  graph::MobileNet model{graph::MobileNetConfig{}};
  const int64_t n = recipe.limit_train > 0 ? std::min(recipe.limit_train, train_size) : train_size;
  return graph::PlannedPeakWith(model, StepInputs(recipe.batch / world), LossOf(model, nullptr),
                                StepOptions(recipe, n / recipe.batch * recipe.epochs,
                                            nullptr))(spec);
}

void FmnistTrainer::Shuffle() {
  ++epoch_;
  // A new permutation each epoch (Fisher-Yates over the identity, from the recipe's seed).
  for (int64_t i = 0; i < train_size_; ++i) order_[i] = i;
  for (int64_t i = train_size_ - 1; i > 0; --i) {
    std::swap(order_[i], order_[rng_() % static_cast<uint64_t>(i + 1)]);
  }
}

absl::StatusOr<graph::StepStats> FmnistTrainer::StepAt(int64_t s) {
  const int64_t b = recipe_.batch;
  for (int64_t r = 0; r < b; ++r) indices_[r] = train_pool_[order_[s * b + r]];
  FillMine(data_.train, indices_);
  STRATA_ASSIGN_OR_RETURN(const graph::StepStats st, program_->Step({images_, labels_}));
  if (!std::isfinite(st.loss)) {
    return absl::InternalError(absl::StrCat("epoch ", epoch_, " step ", s + 1, ": the loss is ",
                                            st.loss, " (try a smaller --lr or a --warmup)"));
  }
  return st;
}

absl::Status FmnistTrainer::TrainSteps(int64_t steps) {
  for (int64_t i = 0; i < steps; ++i) {
    if (i % steps_per_epoch() == 0) Shuffle();
    STRATA_RETURN_IF_ERROR(StepAt(i % steps_per_epoch()).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<FmnistEpoch> FmnistTrainer::TrainEpoch(
    const std::function<void(const FmnistStep&)>& on_step) {
  Shuffle();
  const int64_t steps = steps_per_epoch();
  double loss_sum = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < steps; ++s) {
    STRATA_ASSIGN_OR_RETURN(const graph::StepStats st, StepAt(s));
    loss_sum += st.loss;
    if (on_step) on_step({epoch_, s + 1, steps, st});
  }
  const double train_s = Seconds(start);
  STRATA_ASSIGN_OR_RETURN(FmnistEpoch e, Test());
  e.epoch = epoch_;
  e.step = program_->step_count();
  e.train_loss = loss_sum / static_cast<double>(steps);
  e.train_s = train_s;
  return e;
}

absl::StatusOr<FmnistEpoch> FmnistTrainer::Test() {
  const auto start = std::chrono::steady_clock::now();
  const FashionMnistSplit& test = data_.test;
  const int64_t n = static_cast<int64_t>(test_pool_.size());
  const int64_t b = recipe_.batch;
  const int64_t classes = program_->graph().value(logits_).type.shape.dim(1);
  const int64_t mine = static_cast<int64_t>(mine_.size());
  FmnistEpoch e;
  double loss_sum = 0;
  for (int64_t first = 0; first < n; first += b) {
    // The last batch is padded with test images from the start; only its first `real` rows
    // count, of which this rank holds rows [rank * mine, (rank + 1) * mine).
    const int64_t real = std::clamp<int64_t>(std::min(b, n - first) - rank_ * mine, 0, mine);
    for (int64_t r = 0; r < b; ++r) indices_[r] = test_pool_[(first + r) % n];
    FillMine(test, indices_);
    STRATA_RETURN_IF_ERROR(program_->Evaluate({images_, labels_}).status());
    // A copy on the host, wherever the step runs (the device's memory is not the host's).
    STRATA_ASSIGN_OR_RETURN(const Tensor logits,
                            program_->ReadState(logits_, DefaultCpuAllocator()));
    const float* z = logits.data<float>();
    const int32_t* y = labels_.data<int32_t>();
    for (int64_t r = 0; r < real; ++r) {
      const float* row = z + r * classes;
      const int64_t best = std::max_element(row, row + classes) - row;
      e.test_correct += best == y[r];
      double sum = 0;
      for (int64_t c = 0; c < classes; ++c) sum += std::exp(double{row[c]} - row[best]);
      loss_sum += std::log(sum) + row[best] - row[y[r]];  // -log softmax(row)[y]
    }
  }
  if (world_ > 1) {  // counts below 2^24 are exact in f32
    counts_.data<float>()[0] = static_cast<float>(e.test_correct);
    counts_.data<float>()[1] = static_cast<float>(loss_sum);
    STRATA_RETURN_IF_ERROR(comm_->Blocking().AllReduce(counts_));
    e.test_correct = static_cast<int64_t>(counts_.data<float>()[0]);
    loss_sum = counts_.data<float>()[1];
  }
  e.test_size = n;
  e.test_accuracy = static_cast<double>(e.test_correct) / static_cast<double>(n);
  e.test_loss = loss_sum / static_cast<double>(n);
  e.test_s = Seconds(start);
  e.epoch = epoch_;
  e.step = program_->step_count();
  return e;
}

}  // namespace strata::examples
