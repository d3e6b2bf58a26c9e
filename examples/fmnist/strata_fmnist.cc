// strata-fmnist: trains a small MobileNetV2-style CNN (graph/models/mobilenet.h) on
// Fashion-MNIST and reports test accuracy after each epoch.
//
//   strata-fmnist [--epochs 2] [--batch 64] [--optimizer sgd|adamw] [--lr 0.05]
//                 [--data /usr/share/datasets/fashion-mnist] [--metrics run.jsonl] [--save DIR]
//
// The data are the four gzip IDX files as Debian's dataset-fashion-mnist installs them. The
// recipe (shuffling, schedule, test scoring) is examples/fmnist/fmnist_train.h.
//
// Launched on several ranks (launch/strata-run -n N -- strata-fmnist ...), it trains data
// parallel: --batch stays the global batch, each rank reads its B/N images of every batch, the
// BatchNorms take their statistics over the global batch, and the losses are the one-process
// run's (Note [synchronized batch norm] in graph/passes/sync_batch_norm.cc). Rank 0 prints,
// writes --metrics and --save.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "collectives/create_communicator.h"
#include "examples/common/flags.h"
#include "examples/common/metrics.h"
#include "examples/common/offload_flags.h"
#include "examples/common/step_metrics.h"
#include "examples/common/zero_flags.h"
#include "examples/fmnist/fashion_mnist.h"
#include "examples/fmnist/fmnist_train.h"
#include "graph/checkpoint.h"
#include "runtime/blas_check.h"
#include "runtime/status.h"
#include "runtime/threading.h"

namespace strata::examples {
namespace {

struct Options {
  FmnistRecipe recipe;
  std::string data = kFashionMnistDir, metrics, save;
  int64_t seed = 0, threads = 0, log_every = 50;
  double comm_timeout = 0;
};

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
  if (!o.save.empty()) STRATA_RETURN_IF_ERROR(graph::CheckSharedDirectory(comm.get(), o.save));
  SetNumThreads(static_cast<int>(o.threads));  // before compiling: workspaces are sized for it
  if (const std::string w = SlowBlasKernelWarning(); !w.empty() && rank == 0) {
    std::fprintf(stderr, "strata-fmnist: %s\n", w.c_str());  // Note [OpenBLAS on CPUs it does not know]
  }
  o.recipe.seed = static_cast<uint64_t>(o.seed);
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
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<FmnistTrainer> trainer,
                          FmnistTrainer::Create(*data, o.recipe, world > 1 ? comm.get() : nullptr));
  const FmnistRecipe& r = o.recipe;
  const int64_t params = trainer->program().num_parameters();
  std::printf("strata-fmnist: %s, %lld training images, %lld test images; %lld parameters; "
              "%s lr %g (%s), batch %lld, %lld epochs of %lld steps, %d threads\n%s\n%s",
              o.data.c_str(), static_cast<long long>(trainer->train_size()),
              static_cast<long long>(data->test.size()), static_cast<long long>(params),
              r.optimizer.c_str(), r.resolved_lr(), r.schedule.c_str(),
              static_cast<long long>(r.batch), static_cast<long long>(r.epochs),
              static_cast<long long>(trainer->steps_per_epoch()), NumThreads(),
              trainer->program().memory_report().ToString().c_str(),
              OffloadSummary(r.offload).c_str());
  if (world > 1) {
    std::printf("data parallel over %d ranks (%s): %lld images per rank per batch\n", world,
                comm->Describe().c_str(), static_cast<long long>(r.batch / world));
  }
  std::fflush(stdout);

  absl::Status step_error;
  auto on_step = [&](const FmnistStep& s) {
    const graph::StepStats& st = s.stats;
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
      AddStepMemory(st, record);
      step_error = metrics.Write(record);
    }
  };
  for (int64_t epoch = 1; epoch <= r.epochs; ++epoch) {
    STRATA_ASSIGN_OR_RETURN(const FmnistEpoch e, trainer->TrainEpoch(on_step));
    STRATA_RETURN_IF_ERROR(step_error);
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
    if (epoch == r.epochs) record["peak_rss_bytes"] = PeakRssBytes();
    STRATA_RETURN_IF_ERROR(metrics.Write(record));
  }
  if (!o.save.empty()) {
    graph::TrainerState state;
    state.counters["epoch"] = r.epochs;
    state.extra["data"] = o.data;
    // Collective on several ranks: every rank takes part, rank 0 writes the replicated state
    // (running statistics included) and publishes the checkpoint (Note [sharded checkpoints]).
    STRATA_RETURN_IF_ERROR(graph::SaveCheckpoint(trainer->program(), state, o.save));
    std::printf("saved checkpoint %s at step %lld\n", o.save.c_str(),
                static_cast<long long>(trainer->program().step_count()));
  }
  std::printf("strata-fmnist: done after %lld epochs, peak RSS %s\n",
              static_cast<long long>(r.epochs), MebibytesText(PeakRssBytes()).c_str());
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
  f.Add("log-every", &o.log_every, {.min = 1, .max = kMaxCount},
        "steps between progress lines (the last of each epoch too)");
  strata::examples::OffloadFlags offload;
  offload.Register(f);
  strata::examples::ZeroFlags zero;
  zero.Register(f);
  if (std::optional<int> code = f.ParseOrExitCode(argc, argv)) return *code;
  r.zero = zero.options();
  absl::StatusOr<strata::graph::OffloadOptions> placement = offload.Resolve(f);
  if (!placement.ok()) return f.ExitCode(placement.status());
  r.offload = *placement;
  return f.ExitCode(strata::examples::Train(o));
}
