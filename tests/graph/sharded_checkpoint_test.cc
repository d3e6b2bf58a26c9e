// Sharded checkpoints (Note [sharded checkpoints] in graph/checkpoint.h) on 2 and 3 ranks (ctest
// runs this binary under mpiexec -n 2 and -n 3): a tiny GPT trained at ZeRO stage 2 or 3 for 5
// steps is saved by every rank, then resumed on the same ranks at the same stage, at stage 0, at
// the other stage, in a world of one (each rank alone, on the whole batch) and, with 3 ranks,
// from 3 ranks on 2 and from 2 on 3; and a checkpoint of one process is resumed at stage 2 and 3
// on every rank. The 5 steps after each resume must have the losses of the straight 10-step run
// of one process within 1e-5 relative (data parallel sums run in another order). Also: a save
// where one rank fails leaves the old checkpoint and no temporary directory; missing shard files,
// holes in the index and a directory that the ranks do not share are refused by name; the
// Hugging Face export of a stage-3 run is the gathered model.
//
// Every rank runs every test in the same order, so the collectives match.
#include <mpi.h>
#include <signal.h>
#include <sys/resource.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "collectives/mpi_communicator.h"
#include "gmock/gmock.h"
#include "graph/checkpoint.h"
#include "graph/compile.h"
#include "graph/models/gpt.h"
#include "graph/models/gpt2_checkpoint.h"
#include "graph/ops/ops.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/collectives/mpi_test_main.h"
#include "tests/graph/data_parallel_util.h"

namespace strata::graph {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using ::testing::HasSubstr;

collectives::MpiCommunicator* Comm() { return &testing::JobCommunicator(); }  // the job's, from mpi_test_main

constexpr GptConfig kTiny{.vocab = 64, .block_size = 16, .layers = 2, .width = 32, .heads = 4};
constexpr int64_t kGlobalBatch = 12;  // divisible by 1, 2 and 3 ranks
constexpr int kHead = 5, kSteps = 10;  // saved after kHead steps of kSteps

// A compiled tiny GPT: on the ranks of `group` (every rank by default) at `stage` (threshold
// 1000: the large tensors sharded, the biases and norms whole), or with `alone` in this process
// only, on the whole batch.
struct Trainee {
  std::unique_ptr<Gpt> gpt;
  std::unique_ptr<Program> program;
  collectives::Communicator* group = nullptr;  // null: alone
};

Trainee Make(int stage, bool alone, collectives::Communicator* group = nullptr) {
  if (group == nullptr) group = Comm();
  Trainee r{std::make_unique<Gpt>(kTiny), nullptr, alone ? nullptr : group};
  const int world = alone ? 1 : group->world_size();
  TrainOptions o;
  o.optimizer = OptimizerOptions::AdamW(0.9, 0.95, 1e-8, 0.1);
  o.schedule = {.kind = optim::LrSchedule::kCosine, .max_lr = 1e-2, .min_lr = 1e-3,
                .warmup_steps = 2, .total_steps = 20};
  o.clip_grad_norm = 1.0;
  o.seed = 5;
  o.communicator = r.group;
  o.zero = {.stage = stage, .persistence_threshold = 1000};
  const int64_t rows = kGlobalBatch / world;
  Gpt& gpt = *r.gpt;
  auto p = Compile(gpt, {{"ids", Shape{rows, 16}, DType::kI32}, {"targets", Shape{rows, 16}, DType::kI32}},
                   [&](absl::Span<const Var> in) { return ops::CrossEntropy(gpt.Forward(in[0]), in[1]); },
                   o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (p.ok()) r.program = *std::move(p);
  return r;
}

// Steps [program's step count, until) on this rank's rows; the losses.
std::vector<double> Train(Trainee& run, int until) {
  std::vector<double> losses;
  if (run.program == nullptr) return losses;
  const int world = run.group ? run.group->world_size() : 1, rank = run.group ? run.group->rank() : 0;
  const int64_t rows = kGlobalBatch / world;
  for (int s = static_cast<int>(run.program->step_count()); s < until; ++s) {
    absl::StatusOr<StepStats> st =
        run.program->Step({TokenRows(s, 0, rank * rows, rows), TokenRows(s, 1, rank * rows, rows)});
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) break;
    losses.push_back(st->loss);
  }
  return losses;
}

TrainerState At(uint64_t data_position) {
  TrainerState s;
  s.data_position = data_position;
  return s;
}

// The losses of the straight run of one process, steps 1 .. kSteps.
const std::vector<double>& Straight() {
  static const std::vector<double> losses = [] {
    Trainee run = Make(0, /*alone=*/true);
    return Train(run, kSteps);
  }();
  return losses;
}

// `got` are the losses of steps first + 1 .. last.
void ExpectLosses(const std::vector<double>& got, int first, int last, const std::string& what) {
  const std::vector<double>& want = Straight();
  ASSERT_EQ(static_cast<int>(got.size()), last - first) << what;
  for (int i = 0; i < last - first; ++i) {
    EXPECT_LE(std::abs(got[i] - want[first + i]), 1e-5 * std::abs(want[first + i]))
        << what << ", step " << first + i + 1 << ": " << got[i] << " vs " << want[first + i];
  }
}

// A directory every rank sees (one machine: the same path), emptied by rank 0.
fs::path SharedRoot(const std::string& name) {
  const fs::path root = fs::path(::testing::TempDir()) / "sharded_checkpoint_test" / name;
  if (Comm()->rank() == 0) {
    fs::remove_all(root);
    fs::create_directories(root);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return root;
}

std::vector<std::string> TempLeftovers(const fs::path& root) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp-") != std::string::npos || name.find(".probe-") != std::string::npos) {
      out.push_back(name);
    }
  }
  return out;
}

// Rank 0 rewrites the index of the checkpoint in `dir` with `edit`; every rank waits for it.
void EditIndex(const fs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  if (Comm()->rank() == 0) {
    const fs::path path = dir / kCheckpointStateFile;
    nlohmann::json j = nlohmann::json::parse(std::ifstream(path));
    edit(j);
    std::ofstream(path, std::ios::trunc) << j.dump(2);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// The whole of a state value, gathered with MPI directly (independent of GatherState).
std::vector<float> WholeState(const Program& p, ValueId v) {
  return GatherWhole(p, v, p.ReadState(v, DefaultCpuAllocator()).value());
}

class ShardedCheckpointTest : public ::testing::TestWithParam<int> {};

TEST_P(ShardedCheckpointTest, ResumesOnAnyWorldAndStageWithTheStraightLosses) {
  const int stage = GetParam(), world = Comm()->world_size();
  const fs::path dir = SharedRoot(absl::StrCat("resume_stage", stage)) / "ckpt";
  Trainee first = Make(stage, /*alone=*/false);
  ExpectLosses(Train(first, kHead), 0, kHead, "before the save");
  ASSERT_EQ(SaveCheckpoint(*first.program, At(kHead), dir.string()), absl::OkStatus());
  // Each rank wrote its own files; rank 0 the index.
  for (int r = 0; r < world; ++r) {
    for (bool optimizer : {false, true}) {
      EXPECT_TRUE(fs::exists(dir / CheckpointShardFile(optimizer, r, world)))
          << CheckpointShardFile(optimizer, r, world);
    }
  }
  EXPECT_FALSE(fs::exists(dir / kCheckpointWeightsFile));
  EXPECT_TRUE(TempLeftovers(dir.parent_path()).empty());

  struct Target {
    int stage;
    bool alone;
  };
  for (const Target t : {Target{stage, false}, Target{0, false}, Target{5 - stage, false},
                         Target{stage, true}}) {
    const std::string what =
        absl::StrCat("stage ", stage, " on ", world, " ranks resumed ",
                     t.alone ? "in one process" : absl::StrCat("at stage ", t.stage));
    Trainee resumed = Make(t.stage, t.alone);
    ASSERT_NE(resumed.program, nullptr);
    absl::StatusOr<TrainerState> loaded = LoadCheckpoint(*resumed.program, dir.string());
    ASSERT_TRUE(loaded.ok()) << what << ": " << loaded.status();
    EXPECT_EQ(loaded->data_position, static_cast<uint64_t>(kHead));
    EXPECT_EQ(resumed.program->step_count(), kHead);
    ExpectLosses(Train(resumed, kSteps), kHead, kSteps, what);
  }
}

TEST_P(ShardedCheckpointTest, ResumesOnFewerAndMoreRanks) {
  // N ranks to M, both more than one: the first two ranks of three resume the three's checkpoint
  // (shards of 3 read into shards of 2, which straddle them), and all three resume a checkpoint
  // of the two. Needs 3 ranks or more.
  const int stage = GetParam(), world = Comm()->world_size();
  if (world < 3) GTEST_SKIP() << "needs 3 ranks";
  const fs::path root = SharedRoot(absl::StrCat("fewer_stage", stage));
  const fs::path dir = root / "ckpt", of_two = root / "of_two";
  Trainee first = Make(stage, /*alone=*/false);
  Train(first, kHead);
  ASSERT_EQ(SaveCheckpoint(*first.program, {}, dir.string()), absl::OkStatus());
  MPI_Comm pair;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, Comm()->rank() < 2 ? 0 : MPI_UNDEFINED, Comm()->rank(), &pair),
            MPI_SUCCESS);
  if (pair != MPI_COMM_NULL) {
    auto two = collectives::MpiCommunicator::Create({.timeout_seconds = 20}, pair);
    ASSERT_TRUE(two.ok()) << two.status();
    ASSERT_EQ((*two)->world_size(), 2);
    for (const int to : {stage, 0, 5 - stage}) {
      Trainee resumed = Make(to, /*alone=*/false, two->get());
      ASSERT_NE(resumed.program, nullptr);
      ASSERT_EQ(LoadCheckpoint(*resumed.program, dir.string()).status(), absl::OkStatus());
      ExpectLosses(Train(resumed, kSteps), kHead, kSteps,
                   absl::StrCat("stage ", stage, " on ", world, " ranks resumed at stage ", to,
                                " on 2"));
    }
    Trainee pair_run = Make(stage, /*alone=*/false, two->get());
    ExpectLosses(Train(pair_run, kHead), 0, kHead, "on 2 ranks");
    ASSERT_EQ(SaveCheckpoint(*pair_run.program, {}, of_two.string()), absl::OkStatus());
    pair_run.program.reset();
    two->reset();
    MPI_Comm_free(&pair);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  for (const int to : {stage, 0}) {
    Trainee resumed = Make(to, /*alone=*/false);
    ASSERT_NE(resumed.program, nullptr);
    ASSERT_EQ(LoadCheckpoint(*resumed.program, of_two.string()).status(), absl::OkStatus());
    ExpectLosses(Train(resumed, kSteps), kHead, kSteps,
                 absl::StrCat("stage ", stage, " on 2 ranks resumed at stage ", to, " on ", world));
  }
}

TEST_P(ShardedCheckpointTest, OneProcessCheckpointResumesShardedOnEveryRank) {
  const int stage = GetParam();
  const fs::path dir = SharedRoot(absl::StrCat("from_one_stage", stage)) / "ckpt";
  if (Comm()->rank() == 0) {
    Trainee alone = Make(0, /*alone=*/true);
    ExpectLosses(Train(alone, kHead), 0, kHead, "one process");
    EXPECT_EQ(SaveCheckpoint(*alone.program, {}, dir.string()), absl::OkStatus());
    EXPECT_TRUE(fs::exists(dir / kCheckpointWeightsFile));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  Trainee resumed = Make(stage, /*alone=*/false);
  ASSERT_NE(resumed.program, nullptr);
  ASSERT_EQ(LoadCheckpoint(*resumed.program, dir.string()).status(), absl::OkStatus());
  ExpectLosses(Train(resumed, kSteps), kHead, kSteps, absl::StrCat("resumed at stage ", stage));
}

INSTANTIATE_TEST_SUITE_P(Stages, ShardedCheckpointTest, ::testing::Values(2, 3),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return absl::StrCat("Stage", i.param);
                         });

TEST(ShardedCheckpointFailureTest, OneRankFailingLeavesTheOldCheckpointAndNoTemporary) {
  const int world = Comm()->world_size(), last = world - 1;
  const fs::path root = SharedRoot("failure"), dir = root / "ckpt";
  Trainee run = Make(3, /*alone=*/false);
  Train(run, kHead);
  ASSERT_EQ(SaveCheckpoint(*run.program, At(1), dir.string()), absl::OkStatus());
  Train(run, kHead + 1);
  // The last rank's file system takes no more than 1 KiB per file (as a full disk would refuse):
  // its shard file fails part way.
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &before), 0);
  if (Comm()->rank() == last) {
    signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead of ending the process
    const rlimit small{1024, before.rlim_max};
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  }
  const absl::Status s = SaveCheckpoint(*run.program, At(2), dir.string());
  if (Comm()->rank() == last) {
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &before), 0);
  }
  // Every rank fails with the failed write's code.
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  if (Comm()->rank() == last) {
    EXPECT_THAT(s.message(), HasSubstr(CheckpointShardFile(false, last, world))) << s;
    EXPECT_THAT(s.message(), HasSubstr("EFBIG")) << s;
  } else {
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("rank ", last, " of ", world, " failed"))) << s;
    EXPECT_THAT(s.message(), HasSubstr(dir.string())) << s;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(TempLeftovers(root).empty()) << TempLeftovers(root)[0];
  // The old checkpoint is whole and loads.
  Trainee resumed = Make(3, /*alone=*/false);
  absl::StatusOr<TrainerState> loaded = LoadCheckpoint(*resumed.program, dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->data_position, 1u);
  EXPECT_EQ(resumed.program->step_count(), kHead);
}

TEST(ShardedCheckpointErrorTest, MissingShardFilesAndHolesInTheIndexAreNamed) {
  const int world = Comm()->world_size(), last = world - 1;
  const fs::path dir = SharedRoot("errors") / "ckpt";
  Trainee run = Make(3, /*alone=*/false);
  Train(run, kHead);
  ASSERT_EQ(SaveCheckpoint(*run.program, {}, dir.string()), absl::OkStatus());
  const std::string name = "h.0.attn.c_attn.weight";  // 3072 elements, sharded
  const int64_t numel = 3 * kTiny.width * kTiny.width;
  const collectives::ShardRange tail = collectives::ShardOf(numel, world, last);

  // The index without the last rank's piece of one tensor: a hole where that rank's shard was.
  EditIndex(dir, [&](nlohmann::json& j) { j["tensors"][name]["pieces"].erase(last); });
  {
    Trainee alone = Make(0, /*alone=*/true);  // needs every element
    const absl::Status s = LoadCheckpoint(*alone.program, dir.string()).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("elements [", tail.offset, ", ", numel,
                                                    ") of tensor '", name, "' are in none")));
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("of ", world, " rank(s)")));
    EXPECT_EQ(alone.program->step_count(), 0);
    Trainee sharded = Make(3, /*alone=*/false);  // only the last rank misses its range
    const absl::Status t = LoadCheckpoint(*sharded.program, dir.string()).status();
    EXPECT_EQ(t.code(), absl::StatusCode::kDataLoss) << t;
    EXPECT_THAT(t.message(), Comm()->rank() == last ? HasSubstr("are in none of its files")
                                                  : HasSubstr(absl::StrCat("rank ", last, " of ")));
    EXPECT_EQ(sharded.program->step_count(), 0);
  }
  // A piece whose range does not match what its file holds.
  ASSERT_EQ(SaveCheckpoint(*run.program, {}, dir.string()), absl::OkStatus());
  EditIndex(dir, [&](nlohmann::json& j) {
    j["tensors"][name]["pieces"][0]["count"] = j["tensors"][name]["pieces"][0]["count"].get<int>() - 1;
  });
  {
    Trainee alone = Make(0, /*alone=*/true);
    const absl::Status s = LoadCheckpoint(*alone.program, dir.string()).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_THAT(s.message(), HasSubstr(CheckpointShardFile(false, 0, world)));
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("'", name, "'")));
    EXPECT_THAT(s.message(), HasSubstr("the index says it holds elements [0, "));
  }
  // A missing shard file: every rank names it, whatever it would have read.
  ASSERT_EQ(SaveCheckpoint(*run.program, {}, dir.string()), absl::OkStatus());
  const std::string missing = CheckpointShardFile(/*optimizer=*/true, last, world);
  if (Comm()->rank() == 0) fs::remove(dir / missing);
  MPI_Barrier(MPI_COMM_WORLD);
  for (bool alone : {false, true}) {
    Trainee r = Make(alone ? 0 : 2, alone);
    const absl::Status s = LoadCheckpoint(*r.program, dir.string()).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("missing ", missing))) << s;
    EXPECT_EQ(r.program->step_count(), 0);
  }
}

TEST(ShardedCheckpointErrorTest, ADirectoryTheRanksDoNotShareIsRefusedByName) {
  // Each rank names a directory of its own, as ranks on machines that do not share the file
  // system would see it: rank 0's temporary directory is not where the others look.
  const int world = Comm()->world_size();
  const fs::path root = SharedRoot("unshared");
  const fs::path dir = root / absl::StrCat("rank", Comm()->rank()) / "ckpt";
  auto expect_refused = [&](const absl::Status& s, absl::string_view what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << what << ": " << s;
    if (Comm()->rank() == 0) {
      EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("rank 1 of ", world, " failed"))) << what;
    } else {
      EXPECT_THAT(s.message(), HasSubstr("is not on a file system every rank sees")) << what;
      EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("rank ", Comm()->rank(), " cannot see"))) << what;
      EXPECT_THAT(s.message(), HasSubstr(dir.string())) << what;
    }
  };
  expect_refused(CheckSharedDirectory(Comm(), dir.string()), "CheckSharedDirectory");
  Trainee run = Make(3, /*alone=*/false);
  expect_refused(SaveCheckpoint(*run.program, {}, dir.string()), "SaveCheckpoint");
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(TempLeftovers(root / "rank0").empty());
  EXPECT_FALSE(fs::exists(root / "rank0" / "ckpt"));
  // The same directory for every rank is fine.
  EXPECT_EQ(CheckSharedDirectory(Comm(), (root / "ckpt").string()), absl::OkStatus());
  EXPECT_TRUE(TempLeftovers(root).empty());
  // A checkpoint that only rank 0 sees cannot be loaded by the others.
  if (Comm()->rank() == 0) {
    Trainee alone = Make(0, /*alone=*/true);
    ASSERT_EQ(SaveCheckpoint(*alone.program, {}, dir.string()), absl::OkStatus());
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const absl::Status s = LoadCheckpoint(*run.program, dir.string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), Comm()->rank() == 0 ? HasSubstr(absl::StrCat("rank 1 of ", world, " failed"))
                                             : HasSubstr("is not on a file system every rank sees"));
}

TEST(ShardedExportTest, StageThreeExportIsTheGatheredModel) {
  const fs::path path = SharedRoot("export") / "model.safetensors";
  Trainee run = Make(3, /*alone=*/false);
  Train(run, kHead);
  ASSERT_EQ(SaveGpt2Weights(*run.program, kTiny, path.string()), absl::OkStatus());
  MPI_Barrier(MPI_COMM_WORLD);
  // Read back by a program of one process, against the shards gathered with MPI.
  Trainee alone = Make(0, /*alone=*/true);
  ASSERT_EQ(LoadGpt2Weights(*alone.program, path.string()), absl::OkStatus());
  const auto& mine = run.program->parameter_values();
  const auto& theirs = alone.program->parameter_values();
  ASSERT_EQ(mine.size(), theirs.size());
  int sharded = 0;
  for (size_t i = 0; i < mine.size(); ++i) {
    ASSERT_EQ(mine[i].first, theirs[i].first);
    sharded += run.program->graph().value(mine[i].second).shard ? 1 : 0;
    const std::vector<float> want = WholeState(*run.program, mine[i].second);
    const Tensor got = alone.program->ReadState(theirs[i].second, DefaultCpuAllocator()).value();
    ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << mine[i].first;
    EXPECT_EQ(std::vector<float>(got.data<float>(), got.data<float>() + got.numel()), want)
        << mine[i].first;
  }
  EXPECT_GT(sharded, 0);
}

}  // namespace
}  // namespace strata::graph
