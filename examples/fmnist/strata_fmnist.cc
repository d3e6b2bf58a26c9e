// strata-fmnist: trains a small MobileNetV2-style CNN (graph/models/mobilenet.h) on
// Fashion-MNIST and reports test accuracy after each epoch.
//
//   strata-fmnist [--epochs 2] [--batch 64] [--optimizer sgd|adamw] [--lr 0.05]
//                 [--data /usr/share/datasets/fashion-mnist] [--metrics run.jsonl] [--save DIR]
//
// Transfer learning (PockEngine's setting): `--pretrain DIR` trains on classes 0-4 and saves the
// model to DIR; `--finetune DIR` starts from it on all ten classes twice, training only what
// `--sparse-update FILE` selects (by default the last block, the classifier and the biases of the
// layers between), then every parameter, and prints accuracy, memory and step time of both.
// `--sparse-budget BYTES` adds a third fine-tune of what contribution analysis chooses to fit
// the budget (graph/sparse_budget.h), printed before it trains and as a row of the table.
//
// The data are the four gzip IDX files as Debian's dataset-fashion-mnist installs them. The
// recipe (shuffling, schedule, test scoring) is examples/fmnist/fmnist_train.h.
//
// Launched on several ranks (launch/strata-run -n N -- strata-fmnist ...), it trains data
// parallel: --batch stays the global batch, each rank reads its B/N images of every batch, the
// BatchNorms take their statistics over the global batch, and the losses are the one-process
// run's (Note [synchronized batch norm] in graph/passes/sync_batch_norm.cc). Rank 0 prints,
// writes --metrics and --save.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "collectives/create_communicator.h"
#include "examples/common/flags.h"
#include "examples/common/metrics.h"
#include "examples/common/offload_flags.h"
#include "examples/common/param_group_flags.h"
#include "examples/common/sparse_budget_run.h"
#include "examples/common/step_metrics.h"
#include "examples/common/zero_flags.h"
#include "examples/fmnist/fashion_mnist.h"
#include "examples/fmnist/fmnist_train.h"
#include "graph/checkpoint.h"
#include "graph/sparse_budget.h"
#include "graph/sparse_update.h"
#include "runtime/blas_check.h"
#include "runtime/status.h"
#include "runtime/threading.h"

namespace strata::examples {
namespace {

struct Options {
  FmnistRecipe recipe;
  std::string data = kFashionMnistDir, metrics, save;
  std::string pretrain, finetune, sparse_update, classes;
  std::string device = "cpu";  // --device: cpu or cuda:N
  int64_t seed = 0, threads = 0, log_every = 50;
  // --sparse-budget (with --finetune): a third fine-tune, training what the contribution
  // analysis of graph/sparse_budget.h chooses to fit this many bytes; 0: off.
  int64_t sparse_budget = 0, sparse_budget_batches = 8;
  std::string sparse_budget_ratios = "0.25,0.5,1";  // the channel ratios each block is tried at
  double comm_timeout = 0;
};

// The fine-tune of --finetune without --sparse-update (PockEngine's CNN case): the weights of the
// last block, of the 1x1 head after it and of the classifier, and of the block before its biases
// and its first (expand) convolution, whose input is the block's narrow input; the backward stops
// at blocks.3 (docs/sparse.md: 15.9 MiB of the 21.3 the 1/5 goal leaves).
constexpr char kDefaultCnnSpec[] =
    R"([{"match": "blocks.4.*", "update": "full"}, {"match": "blocks.3.*", "update": "bias_only"},)"
    R"( {"match": "blocks.3.expand.conv.*", "update": "full"},)"
    R"( {"match": "head.*", "update": "full"}, {"match": "classifier.*", "update": "full"}])";

// What one training run gives the --finetune table.
struct RunResult {
  FmnistEpoch last;
  int64_t planned_device = 0;   // planned peak of the device tier
  int64_t measured_device = 0;  // the largest measured peak of any step
  int64_t weight_bytes = 0;     // parameters and buffers, on the device whatever trains
  double median_step_ms = 0;    // steps after the first
};

// "3,2,7" -> {3, 2, 7}.
absl::StatusOr<std::vector<int32_t>> ParseClasses(const std::string& text) {
  std::vector<int32_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int32_t c = 0;
    if (!absl::SimpleAtoi(part, &c)) {
      return UsageError(absl::StrCat("--classes ", text, ": \"", part, "\" is not a label"));
    }
    out.push_back(c);
  }
  return out;
}

// Trains `r` for its epochs with progress lines and metrics; saves to `save` when given.
absl::StatusOr<RunResult> TrainOnce(const Options& o, const FmnistRecipe& r,
                                    collectives::Communicator* comm, const FashionMnist& data,
                                    MetricsFile& metrics, const std::string& save,
                                    const std::string& label) {
  const int world = comm != nullptr ? comm->world_size() : 1;
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<FmnistTrainer> trainer,
                          FmnistTrainer::Create(data, r, world > 1 ? comm : nullptr));
  const int64_t params = trainer->program().num_parameters();
  std::printf("strata-fmnist%s: %s, %lld training images, %lld test images%s; %lld parameters; "
              "%s lr %g (%s), batch %lld, %lld epochs of %lld steps, %d threads\n",
              label.c_str(), o.data.c_str(), static_cast<long long>(trainer->train_size()),
              static_cast<long long>(r.limit_test > 0 ? std::min(r.limit_test, data.test.size())
                                                      : data.test.size()),
              r.classes.empty() ? "" : absl::StrCat(" (classes ", absl::StrJoin(r.classes, ","), ")").c_str(),
              static_cast<long long>(params), r.optimizer.c_str(), r.resolved_lr(),
              r.schedule.c_str(), static_cast<long long>(r.batch), static_cast<long long>(r.epochs),
              static_cast<long long>(trainer->steps_per_epoch()), NumThreads());
  if (const graph::SparseUpdatePlan* plan = trainer->sparse_plan()) {
    std::printf("%s\n", plan->Summary().c_str());
  }
  std::printf("%s", trainer->param_groups().Summary().c_str());
  if (!r.init_from.empty()) std::printf("weights from %s\n", r.init_from.c_str());
  std::printf("%s\n%s", trainer->program().memory_report().ToString().c_str(),
              OffloadSummary(r.offload).c_str());
  if (world > 1) {
    std::printf("data parallel over %d ranks (%s): %lld images per rank per batch\n", world,
                comm->Describe().c_str(), static_cast<long long>(r.batch / world));
  }
  std::fflush(stdout);

  RunResult result;
  const int device = static_cast<int>(MemoryTier::kDevice);
  result.planned_device = trainer->program().memory_report().planned_peak[device];
  for (const auto& [name, value] : trainer->program().parameter_values()) {
    const graph::Value& v = trainer->program().graph().value(value);
    if (v.home == MemoryTier::kDevice) result.weight_bytes += static_cast<int64_t>(v.nbytes());
  }
  std::vector<double> step_ms;
  absl::Status step_error;
  auto on_step = [&](const FmnistStep& s) {
    const graph::StepStats& st = s.stats;
    result.measured_device = std::max(result.measured_device, st.peak_bytes[device]);
    if (st.step > 1) step_ms.push_back(st.step_ms);
    if (s.step_in_epoch % o.log_every == 0 || s.step_in_epoch == s.steps_per_epoch ||
        st.step == 1) {
      std::printf("epoch %lld step %5lld/%lld | loss %.4f | lr %.2e | %.1f ms | %.0f images/s%s\n",
                  static_cast<long long>(s.epoch), static_cast<long long>(s.step_in_epoch),
                  static_cast<long long>(s.steps_per_epoch), st.loss, st.lr, st.step_ms,
                  st.samples_per_s * world, IoWaitText(st, r.offload).c_str());
      std::fflush(stdout);
    }
    if (step_error.ok()) {
      nlohmann::json record = {{"epoch", s.epoch}, {"step", st.step}, {"loss", st.loss},
                               {"lr", st.lr}, {"step_ms", st.step_ms},
                               {"samples_per_s", st.samples_per_s * world},
                               {"world_size", st.world_size}, {"comm_bytes", st.comm_bytes}};
      if (!label.empty()) record["run"] = label.substr(1);
      AddStepMemory(st, record);
      step_error = metrics.Write(record);
    }
  };
  for (int64_t epoch = 1; epoch <= r.epochs; ++epoch) {
    STRATA_ASSIGN_OR_RETURN(const FmnistEpoch e, trainer->TrainEpoch(on_step));
    STRATA_RETURN_IF_ERROR(step_error);
    result.last = e;
    std::printf("epoch %lld | train loss %.4f | test loss %.4f | test accuracy %.4f (%lld/%lld) | "
                "%.1f s training, %.1f s testing\n",
                static_cast<long long>(e.epoch), e.train_loss, e.test_loss, e.test_accuracy,
                static_cast<long long>(e.test_correct), static_cast<long long>(e.test_size),
                e.train_s, e.test_s);
    std::fflush(stdout);
    nlohmann::json record = {
        {"epoch", e.epoch}, {"step", e.step}, {"train_loss", e.train_loss},
        {"test_loss", e.test_loss}, {"test_accuracy", e.test_accuracy},
        {"test_images", e.test_size}, {"epoch_s", e.train_s}, {"test_s", e.test_s}};
    if (!label.empty()) record["run"] = label.substr(1);
    if (epoch == r.epochs) record["peak_rss_bytes"] = PeakRssBytes();
    STRATA_RETURN_IF_ERROR(metrics.Write(record));
  }
  if (!step_ms.empty()) {
    std::sort(step_ms.begin(), step_ms.end());
    result.median_step_ms = step_ms[step_ms.size() / 2];
  }
  if (!save.empty()) {
    graph::TrainerState state;
    state.counters["epoch"] = r.epochs;
    state.extra["data"] = o.data;
    // Collective on several ranks: every rank takes part, rank 0 writes the replicated state
    // (running statistics included) and publishes the checkpoint (Note [sharded checkpoints]).
    STRATA_RETURN_IF_ERROR(graph::SaveCheckpoint(trainer->program(), state, save));
    std::printf("saved checkpoint %s at step %lld\n", save.c_str(),
                static_cast<long long>(trainer->program().step_count()));
  }
  return result;
}

// The --finetune table: the sparse fine-tune (and the --sparse-budget one) against full
// fine-tuning from the same weights.
void PrintFinetuneTable(const RunResult& sparse, const RunResult* budget, const RunResult& full) {
  constexpr double kMiB = 1 << 20;
  auto beyond = [](const RunResult& r, int64_t bytes) { return bytes - r.weight_bytes; };
  std::printf("\n| fine-tune | test accuracy | planned device MiB | measured device MiB | "
              "measured beyond the weights MiB | step ms |\n|---|---|---|---|---|---|\n");
  std::vector<std::pair<const char*, const RunResult*>> rows = {{"sparse", &sparse}};
  if (budget != nullptr) rows.push_back({"budget", budget});
  rows.push_back({"full", &full});
  for (const auto& [name, r] : rows) {
    std::printf("| %s | %.4f | %.1f | %.1f | %.1f | %.1f |\n", name, r->last.test_accuracy,
                r->planned_device / kMiB, r->measured_device / kMiB,
                beyond(*r, r->measured_device) / kMiB, r->median_step_ms);
  }
  std::printf("\n");
  for (const auto& [name, r] : rows) {
    if (r == &full) continue;
    const double memory =
        static_cast<double>(beyond(*r, r->measured_device)) /
        static_cast<double>(std::max<int64_t>(1, beyond(full, full.measured_device)));
    std::printf("%s / full: memory beyond the weights %.3fx, step time %.3fx, test accuracy "
                "%+.2f points\n",
                name, memory, full.median_step_ms > 0 ? r->median_step_ms / full.median_step_ms : 0.0,
                100 * (r->last.test_accuracy - full.last.test_accuracy));
  }
}

// --sparse-budget: the contribution analysis of graph/sparse_budget.h from the --finetune
// weights. Each unit fine-tunes for --sparse-budget-batches steps at the recipe's peak learning
// rate (constant) on the run's first shuffle of the training images, then is scored on
// validation images held out of the end of the training set (as many as --limit-test, at most a
// sixth of the set and 10,000): never on the test images, which score the choice afterwards.
// The planned peaks are the step as the fine-tune compiles it.
absl::StatusOr<graph::SparseUpdateSpec> ChooseByBudget(const Options& o,
                                                       const FashionMnist& data) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t n = data.train.size();
  const int64_t held = std::min({n / 6, int64_t{10000},
                                 o.recipe.limit_test > 0 ? o.recipe.limit_test : n});
  FashionMnist split;
  auto take = [&](int64_t from, int64_t to, FashionMnistSplit& out) {
    constexpr int64_t kPixels = 28 * 28;
    out.pixels.assign(data.train.pixels.begin() + from * kPixels,
                      data.train.pixels.begin() + to * kPixels);
    out.labels.assign(data.train.labels.begin() + from, data.train.labels.begin() + to);
  };
  take(0, n - held, split.train);
  take(n - held, n, split.test);
  FmnistRecipe trial = o.recipe;
  trial.init_from = o.finetune;
  trial.schedule = "constant";
  trial.warmup_steps = 0;
  trial.limit_test = 0;  // every held-out image
  graph::SparseBudgetCallbacks cb;
  cb.held_out_loss = [&](const graph::SparseUpdateSpec& spec,
                         int64_t steps) -> absl::StatusOr<double> {
    FmnistRecipe r = trial;
    r.sparse_update = spec;
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<FmnistTrainer> t, FmnistTrainer::Create(split, r));
    STRATA_RETURN_IF_ERROR(t->TrainSteps(steps));
    STRATA_ASSIGN_OR_RETURN(const FmnistEpoch e, t->Test());
    return e.test_loss;
  };
  cb.planned_peak = [&](const graph::SparseUpdateSpec& spec) {
    return PlanFmnistStep(o.recipe, data.train.size(), spec);
  };
  graph::MobileNet model{graph::MobileNetConfig{}};
  std::vector<graph::SparseBudgetUnit> units =
      graph::SparseBudgetUnits(graph::SparseBudgetBlocks(model),
                                *graph::ParseChannelRatios(o.sparse_budget_ratios));
  return RunSparseBudget(std::move(units), cb,
                         {.budget = o.sparse_budget,
                          .batches = o.sparse_budget_batches,
                          .lr = o.recipe.resolved_lr(),
                          .held_out = absl::StrCat("on ", held,
                                                   " validation images held out of the training set"),
                          .start = start});
}

absl::Status Train(Options o) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<collectives::Communicator> comm,
                          collectives::CreateCommunicator({.timeout_seconds = o.comm_timeout}));
  const int world = comm->world_size(), rank = comm->rank();
  if (o.recipe.batch % world != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--batch ", o.recipe.batch, " does not split among ", world, " ranks: each rank reads "
        "--batch / ", world, " images of every batch, so give a multiple of ", world));
  }
  // Rank 0 speaks for the job; the others print only errors (on stderr).
  if (rank != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) {
    return absl::InternalError("cannot silence the standard output of rank " + std::to_string(rank));
  }
  // Transfer learning: --pretrain DIR trains on classes 0-4 and saves there; --finetune DIR
  // starts from its weights on every class, sparse and full.
  if (!o.pretrain.empty() && !o.finetune.empty()) {
    return UsageError("--pretrain and --finetune are two runs: pretrain first, then fine-tune");
  }
  if (!o.pretrain.empty() && !o.save.empty()) {
    return UsageError(absl::StrCat("--pretrain ", o.pretrain, " saves there; --save ", o.save,
                                   " would be a second checkpoint of the same run"));
  }
  if (!o.finetune.empty() && !o.save.empty()) {
    return UsageError("--finetune trains two models (sparse and full) and keeps neither; "
                      "leave out --save");
  }
  if (o.sparse_budget > 0 && o.finetune.empty()) {
    return UsageError(absl::StrCat("--sparse-budget ", BytesText(o.sparse_budget),
                                   " chooses what a --finetune DIR run trains: give --finetune"));
  }
  if (o.sparse_budget > 0 && !o.sparse_update.empty()) {
    return UsageError(absl::StrCat("--sparse-update ", o.sparse_update, " and --sparse-budget ",
                                   BytesText(o.sparse_budget),
                                   " both choose what trains: give one of them"));
  }
  if (absl::StatusOr<std::vector<double>> r = graph::ParseChannelRatios(o.sparse_budget_ratios);
      !r.ok()) {
    return UsageError(absl::StrCat("--sparse-budget-ratios: ", r.status().message()));
  }
  if (o.sparse_budget > 0 && world > 1) {
    return UsageError(absl::StrCat(
        "--sparse-budget runs its analysis in one process, not on ", world, " ranks: run it "
        "alone, then pass the rules it prints with --sparse-update"));
  }
  if (!o.classes.empty()) {
    STRATA_ASSIGN_OR_RETURN(o.recipe.classes, ParseClasses(o.classes));
  } else if (!o.pretrain.empty()) {
    o.recipe.classes = {0, 1, 2, 3, 4};
  }
  if (!o.pretrain.empty()) o.save = o.pretrain;
  std::optional<graph::SparseUpdateSpec> spec;
  if (!o.sparse_update.empty()) {
    STRATA_ASSIGN_OR_RETURN(spec, graph::ReadSparseUpdateFile(o.sparse_update));
  } else if (!o.finetune.empty()) {
    STRATA_ASSIGN_OR_RETURN(spec, graph::ParseSparseUpdateJson(kDefaultCnnSpec, "the default fine-tune"));
  }
  if (!o.save.empty()) STRATA_RETURN_IF_ERROR(graph::CheckSharedDirectory(comm.get(), o.save));
  SetNumThreads(static_cast<int>(o.threads));  // before compiling: workspaces are sized for it
  if (const std::string w = SlowBlasKernelWarning(); !w.empty() && rank == 0) {
    std::fprintf(stderr, "strata-fmnist: %s\n", w.c_str());  // Note [OpenBLAS on CPUs it does not know]
  }
  o.recipe.seed = static_cast<uint64_t>(o.seed);
  absl::StatusOr<Device> device = ParseDevice(o.device);
  if (!device.ok()) return UsageError(absl::StrCat("--device: ", device.status().message()));
  o.recipe.device = *device;
  absl::StatusOr<FashionMnist> data = LoadFashionMnist(o.data);
  if (!data.ok()) {
    return absl::Status(data.status().code(),
                        absl::StrCat(data.status().message(),
                                     " (install Debian's dataset-fashion-mnist, or pass --data "
                                     "DIR with the four .gz IDX files)"));
  }
  // The recipe's errors name a flag that contradicts another or the data (--batch, --warmup).
  if (absl::Status s = o.recipe.Validate(data->train.size()); !s.ok()) return UsageError(s.message());
  STRATA_ASSIGN_OR_RETURN(MetricsFile metrics, MetricsFile::Open(rank == 0 ? o.metrics : ""));
  if (o.finetune.empty()) {
    FmnistRecipe r = o.recipe;
    r.sparse_update = spec;
    STRATA_RETURN_IF_ERROR(TrainOnce(o, r, comm.get(), *data, metrics, o.save, "").status());
  } else {
    FmnistRecipe sparse = o.recipe, full = o.recipe;
    sparse.init_from = full.init_from = o.finetune;
    sparse.sparse_update = spec;
    std::optional<RunResult> b;
    if (o.sparse_budget > 0) {
      FmnistRecipe budget = sparse;
      STRATA_ASSIGN_OR_RETURN(budget.sparse_update, ChooseByBudget(o, *data));
      STRATA_ASSIGN_OR_RETURN(b, TrainOnce(o, budget, comm.get(), *data, metrics, "", " (budget)"));
    }
    STRATA_ASSIGN_OR_RETURN(const RunResult s,
                            TrainOnce(o, sparse, comm.get(), *data, metrics, "", " (sparse)"));
    STRATA_ASSIGN_OR_RETURN(const RunResult f,
                            TrainOnce(o, full, comm.get(), *data, metrics, "", " (full)"));
    PrintFinetuneTable(s, b ? &*b : nullptr, f);
  }
  if (o.finetune.empty()) {
    std::printf("strata-fmnist: done after %lld epochs, peak RSS %s\n",
                static_cast<long long>(o.recipe.epochs), MebibytesText(PeakRssBytes()).c_str());
  } else {
    std::printf("strata-fmnist: done, peak RSS %s\n", MebibytesText(PeakRssBytes()).c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace strata::examples

int main(int argc, char** argv) {
  using strata::examples::Flags;
  using strata::examples::kMaxCount;
  strata::examples::Options o;
  strata::examples::FmnistRecipe& r = o.recipe;
  Flags f("strata-fmnist",
          "Trains a small MobileNetV2-style CNN on Fashion-MNIST and reports test accuracy.");
  f.Add("data", &o.data, "directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz");
  f.Add("epochs", &r.epochs, {.min = 1, .max = 1000000}, "passes over the training set");
  f.Add("batch", &r.batch, {.min = 1, .max = 65536}, "images per step (also the test batch)");
  f.Add("optimizer", &r.optimizer, "sgd (momentum 0.9) or adamw");
  f.Add("lr", &r.lr, {.min = 0, .max = 10, .zero = "0.05 for sgd, 1e-3 for adamw"},
        "peak learning rate");
  f.Add("weight-decay", &r.weight_decay, {.min = -1, .max = 10},
        "on weights with 2+ dimensions (negative: 5e-4 for sgd, 0.01 for adamw)");
  f.Add("schedule", &r.schedule, "cosine (decays to 0 at the last step) or constant");
  f.Add("warmup", &r.warmup_steps, {.min = 0, .max = kMaxCount}, "linear warm-up steps");
  f.Add("clip", &r.clip_grad_norm, {.min = 0, .max = 1e9, .zero = "off"},
        "clip the global gradient norm to this");
  f.Add("seed", &o.seed, {.min = 0, .max = strata::examples::kMaxSeed},
        "initialization and shuffling seed");
  f.Add("threads", &o.threads, {.min = 0, .max = 4096, .zero = "all cores"}, "threads per rank");
  f.Add("device", &o.device,
        "cpu, or cuda:N to run the step on that GPU (no offload or data parallel there so far; "
        "docs/cuda.md)");
  f.Add("comm-timeout", &o.comm_timeout,
        {.min = 0, .max = 1e6, .zero = "STRATA_COMM_TIMEOUT, else 300"},
        "seconds a collective may wait for the other ranks before the job is ended");
  f.Add("limit-train", &r.limit_train, {.min = 0, .max = kMaxCount, .zero = "all"},
        "train on the first N training images only");
  f.Add("limit-test", &r.limit_test, {.min = 0, .max = kMaxCount, .zero = "all"},
        "score the first N test images only");
  f.Add("init-images", &r.init_images, {.min = 0, .max = 1 << 20, .zero = "off"},
        "scale each convolution to unit output variance on this many training images first "
        "(LSUV)");
  f.Add("check-plan", &r.check_plan, "check the memory plan while training (slow; same losses)");
  f.Add("recompute", &r.recompute,
        "keep only each inverted-residual block's input through the forward and recompute its "
        "activations in the backward (less memory, more time; same losses)");
  f.Add("metrics", &o.metrics, "write one JSON object per step and per epoch to this file");
  f.Add("save", &o.save,
        "after the last epoch, write a checkpoint (weights with the BatchNorm running statistics, "
        "optimizer state) to this directory");
  f.Add("pretrain", &o.pretrain,
        "train on the source task (classes 0-4, or --classes) and save the model to this "
        "directory, for --finetune");
  f.Add("finetune", &o.finetune,
        "start from the weights of this --pretrain (or --save) directory, fine-tune on every class "
        "(or --classes) with --sparse-update (default: blocks.4, the head and the classifier, "
        "the biases of blocks.3 and its expand convolution) and with every parameter, and print "
        "both in one table");
  f.Add("sparse-update", &o.sparse_update,
        "JSON file of [{\"match\": \"<glob over parameter paths>\", \"update\": "
        "\"frozen|bias_only|full|channels:F\"}]: train only what it selects");
  f.AddBytes("sparse-budget", &o.sparse_budget, {.zero = "off"},
             "with --finetune, also fine-tune what contribution analysis chooses so that the "
             "planned training step, weights included, fits this size (64M, 1.5G), and add it to "
             "the table; instead of --sparse-update");
  AddSparseBudgetAnalysisFlags(f, &o.sparse_budget_batches, &o.sparse_budget_ratios);
  f.Add("classes", &o.classes, "comma-separated labels to train and score on (default: all)");
  f.Add("log-every", &o.log_every, {.min = 1, .max = kMaxCount},
        "steps between progress lines (the last of each epoch too)");
  std::vector<std::string> param_groups;
  strata::examples::AddParamGroupFlag(f, &param_groups);
  strata::examples::OffloadFlags offload;
  offload.Register(f);
  strata::examples::ZeroFlags zero;
  zero.Register(f);
  if (std::optional<int> code = f.ParseOrExitCode(argc, argv)) return *code;
  absl::StatusOr<std::vector<strata::graph::ParamGroup>> groups =
      strata::examples::ParseParamGroupFlags(param_groups);
  if (!groups.ok()) return f.ExitCode(groups.status());
  r.param_groups = *std::move(groups);
  r.zero = zero.options();
  absl::StatusOr<strata::graph::OffloadOptions> placement = offload.Resolve(f);
  if (!placement.ok()) return f.ExitCode(placement.status());
  r.offload = *placement;
  return f.ExitCode(strata::examples::Train(o));
}
