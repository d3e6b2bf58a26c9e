// Run checkpoints: save -> load -> continue gives bitwise the losses of an uninterrupted run; a
// missing, truncated or mismatched file is refused by name; saving over a checkpoint replaces it
// whole and leaves nothing behind.
#include "graph/checkpoint.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::graph {
namespace {

namespace fs = std::filesystem;
using strata::testing::ExpectStatus;

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};
constexpr int64_t kBatch = 2, kSeq = 16;

struct Compiled {
  std::unique_ptr<Gpt> gpt;
  std::unique_ptr<Program> program;
};

Compiled CompileGpt(uint64_t seed, const GptConfig& config = kTiny,
                    const OffloadOptions& offload = {}) {
  Compiled r{std::make_unique<Gpt>(config), nullptr};
  Gpt* gpt = r.gpt.get();
  TrainOptions o;
  o.offload = offload;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kCosine, .max_lr = 1e-2, .min_lr = 1e-3,
                .warmup_steps = 2, .total_steps = 6};
  o.clip_grad_norm = 1.0;
  o.seed = seed;
  auto p = Compile(*gpt,
                   {{"ids", Shape{kBatch, kSeq}, DType::kI32},
                    {"targets", Shape{kBatch, kSeq}, DType::kI32}},
                   [gpt](absl::Span<const Var> in) {
                     return ops::CrossEntropy(gpt->Forward(in[0]), in[1]);
                   },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (p.ok()) r.program = *std::move(p);
  return r;
}

// A deterministic random token stream: the trainer state a checkpoint must carry is its RNG.
class TokenStream {
 public:
  explicit TokenStream(uint64_t seed) : rng_(seed) {}
  std::vector<Tensor> Next() {
    std::vector<Tensor> batch;
    for (int k = 0; k < 2; ++k) {
      Tensor t = Tensor::Empty(Shape{kBatch, kSeq}, DType::kI32, DefaultCpuAllocator()).value();
      for (int64_t i = 0; i < t.numel(); ++i) {
        t.data<int32_t>()[i] = static_cast<int32_t>(rng_() % kTiny.vocab);
      }
      batch.push_back(t);
    }
    ++batches_;
    return batch;
  }
  TrainerState Save() const {
    std::ostringstream os;
    os << rng_;
    TrainerState s;
    s.data_position = batches_;
    s.rng = os.str();
    return s;
  }
  void Restore(const TrainerState& s) {
    std::istringstream is(s.rng);
    is >> rng_;
    batches_ = s.data_position;
  }

 private:
  std::mt19937_64 rng_;
  uint64_t batches_ = 0;
};

std::vector<double> Train(Program& p, TokenStream& data, int steps) {
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    absl::StatusOr<StepStats> stats = p.Step(data.Next());
    EXPECT_TRUE(stats.ok()) << stats.status();
    if (!stats.ok()) break;
    losses.push_back(stats->loss);
  }
  return losses;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / "checkpoint_test" /
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    fs::create_directories(root_);
    dir_ = (root_ / "ckpt").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  // A checkpoint after three steps of a seed-1 program.
  void SaveAfterThreeSteps(TrainerState extra_state = {}) {
    trained_ = CompileGpt(1);
    ASSERT_NE(trained_.program, nullptr);
    TokenStream data(42);
    Train(*trained_.program, data, 3);
    TrainerState state = data.Save();
    state.counters = extra_state.counters;
    state.extra = extra_state.extra;
    const absl::Status s = SaveCheckpoint(*trained_.program, state, dir_);
    ASSERT_TRUE(s.ok()) << s;
  }

  // Children of root_ other than the checkpoint itself (temporary or set-aside directories).
  std::vector<std::string> Leftovers() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(root_)) {
      if (e.path().filename() != "ckpt") out.push_back(e.path().filename().string());
    }
    return out;
  }

  fs::path root_;
  std::string dir_;
  Compiled trained_;
};

TEST_F(CheckpointTest, ResumedRunMatchesAStraightRunBitwise) {
  Compiled straight = CompileGpt(1);
  ASSERT_NE(straight.program, nullptr);
  TokenStream straight_data(42);
  const std::vector<double> all = Train(*straight.program, straight_data, 6);
  ASSERT_EQ(all.size(), 6u);

  Compiled first = CompileGpt(1);
  ASSERT_NE(first.program, nullptr);
  TokenStream first_data(42);
  const std::vector<double> head = Train(*first.program, first_data, 3);
  for (int s = 0; s < 3; ++s) EXPECT_EQ(head[s], all[s]) << "step " << s + 1;
  const TrainerState saved = first_data.Save();
  ASSERT_TRUE(SaveCheckpoint(*first.program, saved, dir_).ok());

  Compiled resumed = CompileGpt(/*seed=*/7);  // a different init, overwritten by the load
  ASSERT_NE(resumed.program, nullptr);
  absl::StatusOr<TrainerState> loaded = LoadCheckpoint(*resumed.program, dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, saved);
  EXPECT_EQ(resumed.program->step_count(), 3);
  TokenStream resumed_data(0);
  resumed_data.Restore(*loaded);
  const std::vector<double> tail = Train(*resumed.program, resumed_data, 3);
  ASSERT_EQ(tail.size(), 3u);
  for (int s = 0; s < 3; ++s) EXPECT_EQ(tail[s], all[3 + s]) << "step " << 4 + s;

  for (size_t i = 0; i < straight.program->parameters().size(); ++i) {
    EXPECT_TRUE(SameBits(straight.program->parameters()[i].second,
                         resumed.program->parameters()[i].second))
        << straight.program->parameters()[i].first;
  }
  for (size_t i = 0; i < straight.program->optimizer_state().size(); ++i) {
    EXPECT_TRUE(SameBits(straight.program->optimizer_state()[i].second,
                         resumed.program->optimizer_state()[i].second))
        << straight.program->optimizer_state()[i].first;
  }
}

// The format does not depend on where the state lived: a run with everything on NVMe saves, one
// with everything in memory resumes, and the other way round, bitwise like the straight run.
TEST_F(CheckpointTest, ResumesAcrossPlacementsBitwise) {
  OffloadOptions nvme;
  nvme.params = nvme.grads = nvme.optimizer = MemoryTier::kNvme;
  nvme.persistence_threshold = 0;
  nvme.io.dir = root_.string();
  nvme.io.block_size = 16 << 10;
  Compiled straight = CompileGpt(1);
  TokenStream straight_data(42);
  const std::vector<double> all = Train(*straight.program, straight_data, 6);
  ASSERT_EQ(all.size(), 6u);
  for (bool save_on_nvme : {true, false}) {
    SCOPED_TRACE(save_on_nvme ? "saved from nvme, resumed in memory"
                              : "saved from memory, resumed on nvme");
    Compiled first = CompileGpt(1, kTiny, save_on_nvme ? nvme : OffloadOptions{});
    TokenStream first_data(42);
    const std::vector<double> head = Train(*first.program, first_data, 3);
    for (int s = 0; s < 3; ++s) EXPECT_EQ(head[s], all[s]) << "step " << s + 1;
    // State homed on NVMe passes through memory one tensor at a time, both ways: the peak of
    // the scratch allocator stays at the largest tensor, not the sum (the embedding is 8 KiB
    // of the model's ~100 KiB, times three with the moments).
    int64_t largest = 0, total = 0;
    for (const auto* named : {&first.program->parameter_values(),
                              &first.program->optimizer_state_values()}) {
      for (const auto& [name, v] : *named) {
        const int64_t bytes = first.program->graph().value(v).type.nbytes();
        largest = std::max(largest, bytes);
        total += bytes;
      }
    }
    DefaultCpuAllocator().ResetPeak();
    const int64_t before = DefaultCpuAllocator().usage().in_use;
    ASSERT_TRUE(SaveCheckpoint(*first.program, first_data.Save(), dir_).ok());
    if (save_on_nvme) {
      EXPECT_LE(DefaultCpuAllocator().usage().peak - before, largest);
    }
    Compiled resumed = CompileGpt(7, kTiny, save_on_nvme ? OffloadOptions{} : nvme);
    DefaultCpuAllocator().ResetPeak();
    const int64_t before_load = DefaultCpuAllocator().usage().in_use;
    absl::StatusOr<TrainerState> loaded = LoadCheckpoint(*resumed.program, dir_);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_LE(DefaultCpuAllocator().usage().peak - before_load, largest);
    EXPECT_GT(total, 4 * largest);  // else the bounds above would not tell streaming apart
    TokenStream resumed_data(0);
    resumed_data.Restore(*loaded);
    const std::vector<double> tail = Train(*resumed.program, resumed_data, 3);
    ASSERT_EQ(tail.size(), 3u);
    for (int s = 0; s < 3; ++s) EXPECT_EQ(tail[s], all[3 + s]) << "step " << 4 + s;
  }
}

TEST_F(CheckpointTest, WritesTheDocumentedFilesAndTrainerFields) {
  TrainerState extra;
  extra.counters = {{"epoch", 2}, {"tokens_seen", -5}};
  extra.extra = {{"run", "tiny \"gpt\""}};
  SaveAfterThreeSteps(extra);
  for (const char* f : {kCheckpointWeightsFile, kCheckpointOptimizerFile, kCheckpointStateFile}) {
    EXPECT_TRUE(fs::exists(fs::path(dir_) / f)) << f;
  }
  EXPECT_TRUE(Leftovers().empty());
  Compiled other = CompileGpt(3);
  absl::StatusOr<TrainerState> loaded = LoadCheckpoint(*other.program, dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->data_position, 3u);
  EXPECT_EQ(loaded->counters.at("epoch"), 2);
  EXPECT_EQ(loaded->counters.at("tokens_seen"), -5);
  EXPECT_EQ(loaded->extra.at("run"), "tiny \"gpt\"");
  // The trainer's state alone, without a program, is the same.
  absl::StatusOr<TrainerState> state_only = ReadTrainerState(dir_);
  ASSERT_TRUE(state_only.ok()) << state_only.status();
  EXPECT_EQ(*state_only, *loaded);
  // Optimizer state is saved: AdamW's two moments per parameter.
  SafetensorsFile opt = SafetensorsFile::Read((fs::path(dir_) / kCheckpointOptimizerFile).string(),
                                              DefaultCpuAllocator())
                            .value();
  EXPECT_EQ(opt.names().size(), 2 * other.program->parameters().size());
  EXPECT_TRUE(opt.Contains("wte.weight.exp_avg"));
}

TEST_F(CheckpointTest, RefusesAMissingFileNamingIt) {
  for (const char* f : {kCheckpointOptimizerFile, kCheckpointWeightsFile, kCheckpointStateFile}) {
    SaveAfterThreeSteps();
    fs::remove(fs::path(dir_) / f);
    Compiled other = CompileGpt(3);
    ExpectStatus(LoadCheckpoint(*other.program, dir_).status(), absl::StatusCode::kNotFound,
                 {dir_, f});
  }
}

TEST_F(CheckpointTest, RefusesATruncatedFileNamingIt) {
  for (const char* f : {kCheckpointWeightsFile, kCheckpointOptimizerFile}) {
    SaveAfterThreeSteps();
    const fs::path path = fs::path(dir_) / f;
    fs::resize_file(path, fs::file_size(path) - 100);
    Compiled other = CompileGpt(3);
    const Tensor before = other.program->parameter("wte.weight").value();
    const std::vector<float> copy(before.data<float>(), before.data<float>() + before.numel());
    ExpectStatus(LoadCheckpoint(*other.program, dir_).status(), absl::StatusCode::kDataLoss,
                 {f, "truncated"});
    EXPECT_EQ(std::memcmp(copy.data(), before.data<float>(), before.nbytes()), 0)
        << "a refused load changed the program";
    EXPECT_EQ(other.program->step_count(), 0);
  }
  // A truncated state file does not parse.
  SaveAfterThreeSteps();
  const fs::path state = fs::path(dir_) / kCheckpointStateFile;
  fs::resize_file(state, fs::file_size(state) / 2);
  Compiled other = CompileGpt(3);
  ExpectStatus(LoadCheckpoint(*other.program, dir_).status(), absl::StatusCode::kDataLoss,
               {kCheckpointStateFile});
  ExpectStatus(ReadTrainerState(dir_).status(), absl::StatusCode::kDataLoss, {kCheckpointStateFile});
}

TEST_F(CheckpointTest, RefusesAProgramOfAnotherShapeNamingTheTensor) {
  SaveAfterThreeSteps();
  GptConfig wider = kTiny;
  wider.vocab = 48;
  Compiled other = CompileGpt(3, wider);
  ASSERT_NE(other.program, nullptr);
  ExpectStatus(LoadCheckpoint(*other.program, dir_).status(), absl::StatusCode::kInvalidArgument,
               {kCheckpointWeightsFile, "wte.weight", "[64, 32]", "[48, 32]"});
}

TEST_F(CheckpointTest, RefusesAProgramWithFewerParametersListingTheRest) {
  SaveAfterThreeSteps();
  GptConfig shallower = kTiny;
  shallower.layers = 1;
  Compiled other = CompileGpt(3, shallower);
  ASSERT_NE(other.program, nullptr);
  ExpectStatus(LoadCheckpoint(*other.program, dir_).status(), absl::StatusCode::kInvalidArgument,
               {kCheckpointWeightsFile, "the program does not", "h.1.attn.c_attn.weight"});
}

TEST_F(CheckpointTest, ReplacesAnExistingCheckpointWhole) {
  SaveAfterThreeSteps();
  std::ofstream(fs::path(dir_) / "stale.txt") << "from the old checkpoint";
  // One more step, then save over it.
  TokenStream data(42);
  for (int s = 0; s < 3; ++s) data.Next();
  ASSERT_EQ(trained_.program->Step(data.Next()).status(), absl::OkStatus());
  ASSERT_TRUE(SaveCheckpoint(*trained_.program, data.Save(), dir_).ok());

  EXPECT_FALSE(fs::exists(fs::path(dir_) / "stale.txt"));
  EXPECT_TRUE(Leftovers().empty()) << Leftovers()[0];
  Compiled other = CompileGpt(3);
  absl::StatusOr<TrainerState> loaded = LoadCheckpoint(*other.program, dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->data_position, 4u);
  EXPECT_EQ(other.program->step_count(), 4);
  for (size_t i = 0; i < other.program->parameters().size(); ++i) {
    EXPECT_TRUE(SameBits(trained_.program->parameters()[i].second,
                         other.program->parameters()[i].second));
  }
}

TEST_F(CheckpointTest, RefusesToReplaceADirectoryThatIsNotACheckpoint) {
  fs::create_directories(dir_);
  std::ofstream(fs::path(dir_) / "notes.txt") << "not a checkpoint";
  Compiled p = CompileGpt(1);
  ExpectStatus(SaveCheckpoint(*p.program, {}, dir_), absl::StatusCode::kFailedPrecondition,
               {dir_, "not a checkpoint"});
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "notes.txt"));
  EXPECT_TRUE(Leftovers().empty());
  // An empty directory is fine, and so is a path with a trailing slash.
  fs::remove(fs::path(dir_) / "notes.txt");
  ASSERT_TRUE(SaveCheckpoint(*p.program, {}, dir_ + "/").ok());
  EXPECT_TRUE(fs::exists(fs::path(dir_) / kCheckpointStateFile));
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(CheckpointTest, RefusesStringsThatAreNotTextAndKeepsTheOldCheckpoint) {
  SaveAfterThreeSteps();
  TrainerState bad;
  bad.extra["blob"] = std::string("\xff\xfe", 2);
  ExpectStatus(SaveCheckpoint(*trained_.program, bad, dir_), absl::StatusCode::kInvalidArgument,
               {dir_, "trainer state"});
  EXPECT_TRUE(Leftovers().empty());
  Compiled other = CompileGpt(3);
  absl::StatusOr<TrainerState> loaded = LoadCheckpoint(*other.program, dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->data_position, 3u);
}

}  // namespace
}  // namespace strata::graph
