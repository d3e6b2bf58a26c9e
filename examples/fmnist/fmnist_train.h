// The Fashion-MNIST training recipe of strata-fmnist (and of its test): the MobileNetV2-style
// CNN (graph/models/mobilenet.h) compiled with cross-entropy, trained for whole epochs over a
// freshly shuffled training set, then scored on the 10,000 test images.
//
//   FmnistRecipe r;                                // SGD 0.05, momentum 0.9, cosine, 2 epochs
//   STRATA_ASSIGN_OR_RETURN(auto trainer, FmnistTrainer::Create(data, r));
//   for (int64_t e = 1; e <= r.epochs; ++e) {
//     STRATA_ASSIGN_OR_RETURN(FmnistEpoch ep, trainer->TrainEpoch(on_step));
//     ep.test_accuracy                             // a fraction
//   }
//
// The step is compiled for a fixed batch, so an epoch is floor(train / batch) steps (the last
// partial batch is dropped; a new shuffle each epoch reaches it later), and the test set is run
// in batches of the same size with the last one padded by repeating test images, which are not
// counted. Accuracy comes from the logits: the loss function marks them as an output
// (Tracer::MarkOutput) and Program::value reads them after each Evaluate, which normalizes with
// the BatchNorms' running statistics (PyTorch's model.eval()). Optionally, before the first step,
// the convolutions are rescaled to unit output variance on a few training batches (LSUV).
//
// Data parallel (a communicator of W > 1 ranks): `batch` stays the global batch; every rank draws
// the same shuffle and reads rows [rank * B / W, (rank + 1) * B / W) of each batch, the
// BatchNorms take their statistics over the global batch (Note [synchronized batch norm] in
// graph/passes/sync_batch_norm.cc), so the losses are the one-process run's; each rank scores
// its rows of every test batch and the counts are summed over the ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "collectives/communicator.h"
#include "examples/fmnist/fashion_mnist.h"
#include "graph/compile.h"
#include "graph/models/mobilenet.h"
#include "graph/param_groups.h"
#include "graph/sparse_update.h"
#include "graph/zero_options.h"

namespace strata::examples {

struct FmnistRecipe {
  int64_t epochs = 2;
  int64_t batch = 64;
  std::string optimizer = "sgd";  // "sgd" (momentum 0.9) or "adamw" (betas 0.9, 0.999)
  double lr = 0;                  // peak; 0: 0.05 for sgd, 1e-3 for adamw
  double weight_decay = -1;       // on tensors with >= 2 dims; < 0: 5e-4 for sgd, 0.01 for adamw
  std::string schedule = "cosine";  // "cosine" (to 0 at the last step) or "constant"
  int64_t warmup_steps = 200;  // linear warm-up: without it some seeds lose units early on
  double clip_grad_norm = 0;  // > 0: clip the global gradient norm to this
  uint64_t seed = 0;         // initialization and shuffling
  int64_t limit_train = 0;   // > 0: train on the first N training images only
  int64_t limit_test = 0;    // > 0: score the first N test images only
  // > 0: before the first step, scale each convolution's weight so that its output has unit
  // variance on this many training images (Note [data-dependent initialization] in
  // fmnist_train.cc); 0: keep the model's initialization as it is. Off by default: the
  // training-mode BatchNorms normalize each layer's output themselves.
  int64_t init_images = 0;
  bool check_plan = false;  // check the memory plan while running (graph::TrainOptions::check_plan)
  Device device = Device::Cpu();  // where the step runs (graph::TrainOptions::device)
  graph::OffloadOptions offload;  // where states live (graph::TrainOptions::offload)
  bool recompute = false;   // recompute each block's activations (graph::TrainOptions::recompute)
  graph::ZeroOptions zero;  // with several ranks (graph::TrainOptions::zero)
  // Transfer learning. `classes`: train and score only the images of these labels (the source
  // task of a pretraining run); empty: all ten. `init_from`: a checkpoint directory whose
  // weights and BatchNorm statistics (weights.safetensors) replace the initialization.
  // `sparse_update`: which parameters train (graph/sparse_update.h), applied before compiling.
  std::vector<int32_t> classes;
  std::string init_from;
  std::optional<graph::SparseUpdateSpec> sparse_update;
  // Parameter groups (graph/param_groups.h): an lr scale and weight decay per path pattern.
  std::vector<graph::ParamGroup> param_groups;
  // Errors name the flag-like field; `train_size` is the training set before limit_train.
  absl::Status Validate(int64_t train_size) const;
  double resolved_lr() const;
  double resolved_weight_decay() const;
};

struct FmnistStep {
  int64_t epoch = 0;            // from 1
  int64_t step_in_epoch = 0;    // from 1
  int64_t steps_per_epoch = 0;
  graph::StepStats stats;
};

struct FmnistEpoch {
  int64_t epoch = 0;  // from 1
  int64_t step = 0;   // optimizer steps so far
  double train_loss = 0;     // mean of the epoch's step losses
  double test_loss = 0;      // mean cross-entropy over the scored test images
  double test_accuracy = 0;  // fraction of them classified right
  int64_t test_correct = 0, test_size = 0;
  double train_s = 0, test_s = 0;  // wall time of the epoch's steps, and of scoring
};

// The planned device peak of the step FmnistTrainer::Create compiles for `recipe` on `world`
// ranks, training what `spec` selects; nothing is allocated.
absl::StatusOr<int64_t> PlanFmnistStep(const FmnistRecipe& recipe, int64_t train_size,
                                       const graph::SparseUpdateSpec& spec, int world = 1);

class FmnistTrainer {
 public:
  // Validates the recipe, builds and compiles the model (with the current thread count) for
  // (batch / W, 1, 28, 28) images and (batch / W) labels, W the world size of `comm` (1 when
  // null); batch must be a multiple of W.
  static absl::StatusOr<std::unique_ptr<FmnistTrainer>> Create(
      const FashionMnist& data, const FmnistRecipe& recipe,
      collectives::Communicator* comm = nullptr);

  graph::Program& program() { return *program_; }
  // What recipe.sparse_update trains (null without one).
  const graph::SparseUpdatePlan* sparse_plan() const {
    return sparse_plan_ ? &*sparse_plan_ : nullptr;
  }
  // What recipe.param_groups take of the model's parameters.
  const graph::ParamGroupPlan& param_groups() const { return param_groups_; }
  int64_t train_size() const { return train_size_; }
  int64_t steps_per_epoch() const { return train_size_ / recipe_.batch; }
  int64_t total_steps() const { return steps_per_epoch() * recipe_.epochs; }

  // One epoch of steps over a new shuffle, then Test(); `on_step` (may be empty) sees each step.
  absl::StatusOr<FmnistEpoch> TrainEpoch(const std::function<void(const FmnistStep&)>& on_step);
  // `steps` steps over the shuffles TrainEpoch would draw (a new one at each epoch's start), no
  // test: the short fine-tunes of a --sparse-budget analysis.
  absl::Status TrainSteps(int64_t steps);
  // Scores the test set with the current parameters (test_* fields only).
  absl::StatusOr<FmnistEpoch> Test();

 private:
  FmnistTrainer(const FashionMnist& data, const FmnistRecipe& recipe,
                collectives::Communicator* comm);
  absl::Status ScaleConvolutions(int64_t images);
  // recipe.init_from's weights.safetensors into every parameter and buffer of the program.
  absl::Status LoadWeights(const std::string& dir);
  // A new training permutation, for epoch epoch_ + 1.
  void Shuffle();
  // Step `s` of the current permutation; a loss that is not finite is an error.
  absl::StatusOr<graph::StepStats> StepAt(int64_t s);
  // This rank's rows of the global batch `global` (B example indices) into images_ and labels_.
  void FillMine(const FashionMnistSplit& split, absl::Span<const int64_t> global);

  const FashionMnist& data_;
  FmnistRecipe recipe_;
  collectives::Communicator* comm_;  // null: one process
  int world_ = 1, rank_ = 0;
  int64_t train_size_ = 0;
  // The examples of the recipe's classes (all when it names none), limited by limit_train and
  // limit_test: indices into data_.train and data_.test.
  std::vector<int64_t> train_pool_, test_pool_;
  std::optional<graph::SparseUpdatePlan> sparse_plan_;
  graph::ParamGroupPlan param_groups_;
  int64_t epoch_ = 0;
  std::unique_ptr<graph::MobileNet> model_;
  std::unique_ptr<graph::Program> program_;
  graph::ValueId logits_ = graph::kNoValue;
  Tensor images_, labels_;       // this rank's rows of one batch
  Tensor counts_;                // (correct, loss sum) of a test run, summed over the ranks
  std::vector<int64_t> order_;   // the training permutation
  std::vector<int64_t> indices_; // one global batch's example indices
  std::vector<int64_t> mine_;    // this rank's share of them
  std::mt19937_64 rng_;
};

}  // namespace strata::examples
