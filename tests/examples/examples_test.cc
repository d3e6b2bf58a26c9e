// strata-gpt (and the custom-model example) end to end: the binary is run as a user would run it, on a small text file, and its
// metrics file, checkpoints and error messages are checked.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/blas_check.h"
#include "runtime/safetensors.h"
#include "tests/offload/offload_test_util.h"

namespace strata::examples {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

Result RunBinary(const char* binary, const std::vector<std::string>& args) {
  const std::string command = absl::StrCat(binary, " ", absl::StrJoin(args, " "), " 2>&1");
  Result run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) run.output.append(buffer, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

Result RunStrataGpt(const std::vector<std::string>& args) {
  return RunBinary(STRATA_GPT_BINARY, args);
}

std::vector<nlohmann::json> ReadMetrics(const fs::path& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

class StrataGptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("strata_gpt_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream text(Path("corpus.txt"));
    for (int i = 0; i < 200; ++i) {
      text << "line " << i << ": the quick brown fox jumps over the lazy dog " << i * 7 % 13
           << "\n";
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // A model small enough to train a few steps in well under a second.
  std::vector<std::string> Tiny(int steps) const {
    return {"--data", Path("corpus.txt"), "--layers", "2", "--width", "32", "--heads", "2",
            "--seq", "16", "--batch", "4", "--steps", absl::StrCat(steps), "--lr", "3e-3",
            "--warmup", "2", "--threads", "1", "--log-every", "100"};
  }

  fs::path dir_;
};

std::vector<std::string> With(std::vector<std::string> args,
                              const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Two runs' metrics files: bitwise the same loss at every step, and the second's measured device
// peak below the first's.
void ExpectSameLossesInLessDeviceMemory(const fs::path& first, const fs::path& second,
                                        size_t steps) {
  const std::vector<nlohmann::json> a = ReadMetrics(first);
  const std::vector<nlohmann::json> b = ReadMetrics(second);
  ASSERT_EQ(a.size(), steps);
  ASSERT_EQ(b.size(), steps);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].at("loss").get<double>(), b[i].at("loss").get<double>()) << "step " << i + 1;
    EXPECT_LT(b[i].at("peak_bytes").at("device").get<int64_t>(),
              a[i].at("peak_bytes").at("device").get<int64_t>());
  }
}

TEST_F(StrataGptTest, MetricsCarryTheDocumentedFieldsAndTheLossFalls) {
  const Result run = RunStrataGpt(With(Tiny(30), {"--metrics", Path("m.jsonl"), "--eval-every", "10"}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::vector<nlohmann::json> m = ReadMetrics(Path("m.jsonl"));
  ASSERT_EQ(m.size(), 30u);
  for (size_t i = 0; i < m.size(); ++i) {
    EXPECT_EQ(m[i].at("step").get<int>(), static_cast<int>(i) + 1);
    for (const char* field : {"loss", "lr", "step_ms", "tokens_per_s"}) {
      EXPECT_TRUE(m[i].at(field).is_number()) << field;
    }
    for (const char* tier : {"device", "host", "nvme"}) {
      EXPECT_TRUE(m[i].at("peak_bytes").at(tier).is_number_integer()) << tier;
    }
    // Always present, whether or not anything is offloaded; nothing is here.
    EXPECT_EQ(m[i].at("io_wait_ms").get<double>(), 0.0);
    EXPECT_EQ(m[i].at("io_read_bytes").get<int64_t>(), 0);
    EXPECT_EQ(m[i].at("io_write_bytes").get<int64_t>(), 0);
    EXPECT_EQ(m[i].contains("val_loss"), (i + 1) % 10 == 0) << "step " << i + 1;
    EXPECT_EQ(m[i].contains("peak_rss_bytes"), i + 1 == m.size()) << "step " << i + 1;
  }
  // The process's peak resident set holds at least the planned memory it touched.
  EXPECT_GE(m[29].at("peak_rss_bytes").get<int64_t>(),
            m[29].at("peak_bytes").at("device").get<int64_t>());
  EXPECT_THAT(run.output, HasSubstr("strata-gpt: done at step 30, peak RSS "));
  EXPECT_THAT(run.output, Not(HasSubstr("io wait")));  // only when offloading
  // On a CPU the arena of activations and state is the compute ("device") tier.
  EXPECT_GT(m[0].at("peak_bytes").at("device").get<int64_t>(), 0);
  // Warm-up: the learning rate rises linearly over the first 2 steps to 3e-3.
  EXPECT_NEAR(m[0].at("lr").get<double>(), 1.5e-3, 1e-12);
  EXPECT_NEAR(m[1].at("lr").get<double>(), 3e-3, 1e-12);
  // Bytes: the first loss is near ln 256 and training on repeated text brings it well down.
  EXPECT_NEAR(m[0].at("loss").get<double>(), std::log(256.0), 0.3);
  EXPECT_LT(m[29].at("loss").get<double>(), m[0].at("loss").get<double>() - 1.5);
  EXPECT_THAT(run.output, HasSubstr("held-out loss"));
}

// --check-plan runs every step with the plan checked (graph::TrainOptions::check_plan): the
// losses are bitwise those of the planned arena, and the measured peak is the largest live set,
// below the planned arena's.
// Note [OpenBLAS on CPUs it does not know]: forcing OpenBLAS's SSE3 kernels on a CPU with wider
// vectors must be announced with the setting that fixes it; the suitable kernels must not be.
TEST_F(StrataGptTest, OldBlasKernelsOnAWiderCpuAreAnnounced) {
  const std::string suitable = SuitableBlasCoreType();
  if (suitable.empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  const std::string old = absl::StrCat("OPENBLAS_CORETYPE=Prescott ", STRATA_GPT_BINARY);
  const Result slow = RunBinary(old.c_str(), Tiny(3));
  ASSERT_EQ(slow.exit_code, 0) << slow.output;
  EXPECT_THAT(slow.output, HasSubstr("OpenBLAS runs its Prescott kernels"));
  EXPECT_THAT(slow.output, HasSubstr("OPENBLAS_CORETYPE=" + suitable));
  const std::string fit = absl::StrCat("OPENBLAS_CORETYPE=", suitable, " ", STRATA_GPT_BINARY);
  const Result fast = RunBinary(fit.c_str(), Tiny(3));
  ASSERT_EQ(fast.exit_code, 0) << fast.output;
  EXPECT_THAT(fast.output, Not(HasSubstr("warning: OpenBLAS")));
}

TEST_F(StrataGptTest, CheckPlanGivesBitwiseTheSameLosses) {
  const Result planned = RunStrataGpt(With(Tiny(3), {"--metrics", Path("planned.jsonl")}));
  ASSERT_EQ(planned.exit_code, 0) << planned.output;
  const Result checked =
      RunStrataGpt(With(Tiny(3), {"--check-plan", "--metrics", Path("checked.jsonl")}));
  ASSERT_EQ(checked.exit_code, 0) << checked.output;
  ExpectSameLossesInLessDeviceMemory(Path("planned.jsonl"), Path("checked.jsonl"), 3);
}

TEST_F(StrataGptTest, ResumingGivesExactlyTheLossesOfTheStraightRun) {
  for (const bool shuffle : {false, true}) {
    SCOPED_TRACE(shuffle ? "shuffled windows" : "sequential batches");
    std::vector<std::string> extra;
    if (shuffle) extra.push_back("--shuffle");
    const Result straight = RunStrataGpt(With(With(Tiny(8), {"--metrics", Path("straight.jsonl")}), extra));
    ASSERT_EQ(straight.exit_code, 0) << straight.output;
    // The schedule is a function of --steps: the first job runs 4 of the 8 steps and saves.
    const Result half = RunStrataGpt(
        With(With(Tiny(8), {"--save", Path("ckpt"), "--stop-at", "4"}), extra));
    ASSERT_EQ(half.exit_code, 0) << half.output;
    const Result resumed = RunStrataGpt(
        With(With(Tiny(8), {"--resume", Path("ckpt"), "--metrics", Path("resumed.jsonl")}), extra));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_THAT(resumed.output, HasSubstr("at step 4"));

    const std::vector<nlohmann::json> a = ReadMetrics(Path("straight.jsonl"));
    const std::vector<nlohmann::json> b = ReadMetrics(Path("resumed.jsonl"));
    ASSERT_EQ(a.size(), 8u);
    ASSERT_EQ(b.size(), 4u);
    for (size_t i = 0; i < b.size(); ++i) {
      EXPECT_EQ(b[i].at("step"), a[i + 4].at("step"));
      EXPECT_EQ(b[i].at("loss").get<double>(), a[i + 4].at("loss").get<double>())
          << "step " << i + 5;  // bitwise: same batches, same state, same kernels
      EXPECT_EQ(b[i].at("lr").get<double>(), a[i + 4].at("lr").get<double>());
    }
    fs::remove_all(Path("ckpt"));
  }
}

// An error is one line naming what is wrong, never an abort or a stack trace.
void ExpectCleanError(const Result& run, int exit_code, const std::string& names) {
  EXPECT_EQ(run.exit_code, exit_code) << run.output;
  EXPECT_THAT(run.output, HasSubstr(names));
  for (const char* crash : {"Aborted", "terminate called", "Check failed", "Sanitizer", "#0 "}) {
    EXPECT_THAT(run.output, ::testing::Not(HasSubstr(crash))) << run.output;
  }
}

// A --sparse-budget run's output: the choice ("sparse budget <budget_text>: chose ...") comes
// before step 1, and its planned peak, printed to a tenth of a MiB, is at most `max_mib`.
void ExpectChoiceBeforeStepOne(const std::string& output, const std::string& budget_text,
                               double max_mib) {
  const size_t chose = output.find("sparse budget " + budget_text + ": chose ");
  const size_t step1 = output.find("step     1/");
  ASSERT_NE(chose, std::string::npos) << output;
  ASSERT_NE(step1, std::string::npos) << output;
  EXPECT_LT(chose, step1);
  const size_t peak = output.find("planned peak ", chose);
  ASSERT_NE(peak, std::string::npos);
  EXPECT_LE(std::stod(output.substr(peak + 13)), max_mib) << output;
}

// --sparse-budget: the analysis prints one line per unit and the choice with its planned peak
// before step 1, then trains the chosen rules; the run's planned peak is within the budget.
TEST_F(StrataGptTest, SparseBudgetPrintsTheChoiceThenTrainsIt) {
  const Result run = RunStrataGpt(With(Tiny(3), {"--sparse-budget", "1M",
                                                 "--sparse-budget-batches", "2"}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  // 3 bias units, 5 blocks at ratio 1, and the 2 transformer blocks at 0.25 and 0.5 (the
  // default --sparse-budget-ratios).
  EXPECT_THAT(run.output, HasSubstr("sparse budget 1M: measuring 12 units, 2 steps each"));
  EXPECT_THAT(run.output, HasSubstr("biases of the last 1 block (ln_f)"));
  EXPECT_THAT(run.output, HasSubstr("h.1 full"));
  EXPECT_THAT(run.output, HasSubstr("h.0 channels:0.25"));
  EXPECT_THAT(run.output, HasSubstr("sparse update rules: [{\"match\""));
  ExpectChoiceBeforeStepOne(run.output, "1.0 MiB", 1.0);
  EXPECT_THAT(run.output, HasSubstr("strata-gpt: done at step 3"));

  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--sparse-budget", "10K"})), 1,
                   "--sparse-budget 10K: sparse budget 10240 bytes (0.0 MiB) is below the "
                   "smallest choice, which plans ");
}

TEST_F(StrataGptTest, SparseBudgetFlagErrorsAreNamed) {
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--sparse-budget", "12Q"})), 2,
                   "--sparse-budget expects a size, got '12Q'");
  std::ofstream(Path("spec.json")) << R"([{"match": "h.1.*", "update": "full"}])";
  ExpectCleanError(
      RunStrataGpt(With(Tiny(3), {"--sparse-budget", "1M", "--sparse-update", Path("spec.json")})),
      2, "--sparse-update " + Path("spec.json") + " and --sparse-budget 1M both choose what trains");
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--sparse-budget", "1M", "--val-fraction", "0"})),
                   2, "--sparse-budget 1M measures on held-out tokens, but --val-fraction is 0");
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--sparse-budget", "1M", "--resume", Path("x")})),
                   2, "--sparse-budget measures from the starting weights");
  ExpectCleanError(
      RunStrataGpt(With(Tiny(3), {"--sparse-budget", "1M", "--sparse-budget-batches", "0"})), 2,
      "--sparse-budget-batches 0 is outside its range");
  ExpectCleanError(
      RunStrataGpt(With(Tiny(3), {"--sparse-budget", "1M", "--sparse-budget-ratios", "0.5,2"})), 2,
      "--sparse-budget-ratios: channel ratio \"2\" in \"0.5,2\" must be a number in (0, 1]");
}

TEST_F(StrataGptTest, ResumeRefusesARunThatWouldComputeAnotherOne) {
  ASSERT_EQ(RunStrataGpt(With(Tiny(3), {"--save", Path("ckpt")})).exit_code, 0);
  std::vector<std::string> args = With(Tiny(4), {"--resume", Path("ckpt")});
  args[11] = "2";  // --batch 2 instead of 4
  ExpectCleanError(RunStrataGpt(args), 2,
                   "the checkpoint's run has global batch (--batch x --micro-batches) 4, this run "
                   "has global batch (--batch x --micro-batches) 2");
  args = With(Tiny(4), {"--resume", Path("ckpt")});
  args[7] = "4";  // --heads 4 instead of 2
  ExpectCleanError(RunStrataGpt(args), 2, "--heads 2, this run has --heads 4");
  ExpectCleanError(RunStrataGpt(With(Tiny(4), {"--resume", Path("ckpt"), "--lr", "1e-3"})), 2,
                   "--lr 0.0030000000000000001, this run has --lr 0.001");
  ExpectCleanError(RunStrataGpt(With(Tiny(4), {"--resume", Path("ckpt"), "--seed", "7"})), 2,
                   "--seed 1337, this run has --seed 7");
  // Another data file of the same size: only its hash tells.
  std::string text;
  {
    std::ifstream in(Path("corpus.txt"), std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  text[100] = text[100] == 'x' ? 'y' : 'x';
  std::ofstream(Path("other.txt"), std::ios::binary) << text;
  args = With(Tiny(4), {"--resume", Path("ckpt")});
  args[1] = Path("other.txt");
  ExpectCleanError(RunStrataGpt(args), 2, "--data hash");

  // Placement, budgets and prefetch do not change the math (Note [placement is not part of the
  // run] in examples/common/offload_flags.h): a change is announced.
  const Result placed = RunStrataGpt(With(
      Tiny(4), {"--resume", Path("ckpt"), "--prefetch-bytes", "1M", "--device-budget", "1G"}));
  ASSERT_EQ(placed.exit_code, 0) << placed.output;
  EXPECT_THAT(placed.output, HasSubstr("--prefetch-bytes changes from 67108864 (the checkpoint's "
                                       "run) to 1048576 (it does not change the math)"));
  EXPECT_THAT(placed.output, HasSubstr("--device-budget changes from 0"));

  // What does not change the math is free, and a longer --steps is announced.
  const Result longer =
      RunStrataGpt(With(Tiny(5), {"--resume", Path("ckpt"), "--threads", "2", "--stop-at", "4"}));
  ASSERT_EQ(longer.exit_code, 0) << longer.output;
  EXPECT_THAT(longer.output, HasSubstr("--steps changes from 3 (the checkpoint's run) to 5"));
  EXPECT_THAT(longer.output, HasSubstr("resumed from " + Path("ckpt") + " at step 3"));
}

// --recompute (activation checkpointing) gives bitwise the losses without it, with a smaller
// arena; a resume may turn it on or off, which is announced.
TEST_F(StrataGptTest, RecomputeGivesTheSameLossesInLessArenaAndMayChangeOnResume) {
  const Result plain = RunStrataGpt(With(Tiny(3), {"--metrics", Path("plain.jsonl")}));
  const Result recomputed = RunStrataGpt(
      With(Tiny(3), {"--recompute", "--metrics", Path("recomputed.jsonl"), "--save", Path("ckpt")}));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  ASSERT_EQ(recomputed.exit_code, 0) << recomputed.output;
  ExpectSameLossesInLessDeviceMemory(Path("plain.jsonl"), Path("recomputed.jsonl"), 3);
  const Result resumed = RunStrataGpt(With(Tiny(4), {"--resume", Path("ckpt")}));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("--recompute changes from true (the checkpoint's run) to false"));

  // A checkpoint written before the field existed records no --recompute: announced, not refused.
  nlohmann::json state;
  {
    std::ifstream in(Path("ckpt/trainer_state.json"));
    in >> state;
  }
  ASSERT_EQ(state["trainer"]["extra"].erase("run.--recompute"), 1u);
  std::ofstream(Path("ckpt/trainer_state.json")) << state.dump(2);
  const Result older = RunStrataGpt(With(Tiny(4), {"--resume", Path("ckpt"), "--recompute"}));
  ASSERT_EQ(older.exit_code, 0) << older.output;
  EXPECT_THAT(older.output,
              HasSubstr("--recompute is not recorded by the checkpoint's run; this run has true"));
}

// --precision: bf16 trains close to f32 with other losses; f16 prints and records its loss scale,
// saves it, and a resume at another precision is refused by name (it changes the math).
TEST_F(StrataGptTest, PrecisionFlagTrainsRecordsTheScaleAndIsCheckedOnResume) {
  const Result f32 = RunStrataGpt(With(Tiny(4), {"--metrics", Path("f32.jsonl")}));
  const Result bf16 =
      RunStrataGpt(With(Tiny(4), {"--precision", "bf16", "--metrics", Path("bf16.jsonl")}));
  const Result f16 = RunStrataGpt(With(
      Tiny(4), {"--precision", "f16", "--metrics", Path("f16.jsonl"), "--save", Path("ckpt")}));
  ASSERT_EQ(f32.exit_code, 0) << f32.output;
  ASSERT_EQ(bf16.exit_code, 0) << bf16.output;
  ASSERT_EQ(f16.exit_code, 0) << f16.output;
  const std::vector<nlohmann::json> a = ReadMetrics(Path("f32.jsonl")),
                                    b = ReadMetrics(Path("bf16.jsonl")),
                                    h = ReadMetrics(Path("f16.jsonl"));
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  ASSERT_EQ(h.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    const double l = a[i].at("loss").get<double>();
    EXPECT_NE(b[i].at("loss").get<double>(), l);
    EXPECT_NEAR(b[i].at("loss").get<double>(), l, 0.03 * l);
    EXPECT_NEAR(h[i].at("loss").get<double>(), l, 0.03 * l);
    EXPECT_FALSE(b[i].contains("loss_scale"));  // bf16 does not scale
    EXPECT_EQ(h[i].at("loss_scale").get<double>(), 65536.0);
    EXPECT_FALSE(h[i].at("skipped").get<bool>());
  }
  EXPECT_THAT(f16.output, HasSubstr("| scale 65536"));
  const Result other = RunStrataGpt(With(Tiny(5), {"--resume", Path("ckpt")}));
  ExpectCleanError(other, 2, "--precision");
  const Result same = RunStrataGpt(With(Tiny(5), {"--resume", Path("ckpt"), "--precision", "f16"}));
  ASSERT_EQ(same.exit_code, 0) << same.output;
  ExpectCleanError(RunStrataGpt(With(Tiny(2), {"--precision", "f64"})), 2,
                   "--precision f64: expected f32, bf16 or f16");
}

// f16 at a learning rate that sends the weights past f16's range: every step after the first
// overflows at every scale, and after 64 skipped steps in a row the run stops with an error that
// says so, instead of halving the scale forever.
TEST_F(StrataGptTest, F16StopsAfter64SkippedStepsInARow) {
  const Result diverged = RunStrataGpt(
      With(Tiny(200), {"--precision", "f16", "--lr", "10", "--metrics", Path("f16.jsonl")}));
  ExpectCleanError(diverged, 1, "64 steps in a row had non-finite gradients");
  EXPECT_THAT(diverged.output, HasSubstr("training diverged"));
  EXPECT_THAT(diverged.output, HasSubstr("(overflow: step skipped)"));
  const std::vector<nlohmann::json> steps = ReadMetrics(Path("f16.jsonl"));
  ASSERT_GE(steps.size(), 64u);
  for (size_t i = steps.size() - 64; i < steps.size(); ++i) {
    EXPECT_TRUE(steps[i].at("skipped").get<bool>()) << "record " << i;
  }
}

// A checkpoint that records no run configuration cannot be checked, so it is refused.
TEST_F(StrataGptTest, ResumeRefusesACheckpointWithoutARecordedRun) {
  ASSERT_EQ(RunStrataGpt(With(Tiny(3), {"--save", Path("ckpt")})).exit_code, 0);
  nlohmann::json state;
  {
    std::ifstream in(Path("ckpt/trainer_state.json"));
    in >> state;
  }
  state["trainer"]["extra"] = nlohmann::json::object();
  std::ofstream(Path("ckpt/trainer_state.json")) << state.dump(2);
  ExpectCleanError(RunStrataGpt(With(Tiny(4), {"--resume", Path("ckpt")})), 1,
                   "records no --layers of the run that wrote it");
}

TEST_F(StrataGptTest, AMissingCheckpointFileIsNamed) {
  ASSERT_EQ(RunStrataGpt(With(Tiny(3), {"--save", Path("ckpt")})).exit_code, 0);
  fs::remove(Path("ckpt/optimizer.safetensors"));
  const Result run = RunStrataGpt(With(Tiny(4), {"--resume", Path("ckpt")}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("optimizer.safetensors"));
}

TEST_F(StrataGptTest, ATokenIdPastTheVocabularyIsNamed) {
  // A headerless uint16 token file (nanoGPT) holding id 300 against a vocabulary of 256.
  std::vector<uint16_t> tokens(4096);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i % 200);
  tokens[1234] = 300;
  {
    std::ofstream out(Path("tokens.bin"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(uint16_t));
  }
  std::vector<std::string> args = Tiny(3);
  args[1] = Path("tokens.bin");
  const Result run = RunStrataGpt(With(args, {"--vocab", "256"}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("token id 300"));
  EXPECT_THAT(run.output, HasSubstr("tokens.bin"));
}

// llm.c's uint32 token files (magic 20240801, version 7, as its llama-3 tooling writes them):
// ids past 65,535 train, and one past --vocab is named with its position.
TEST_F(StrataGptTest, TrainsOnAUint32TokenFile) {
  std::vector<uint32_t> tokens(4096);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(65000 + i % 1000);
  auto write = [&](const std::string& path) {
    std::vector<int32_t> header(256, 0);
    header[0] = 20240801;
    header[1] = 7;
    header[2] = static_cast<int32_t>(tokens.size());
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header.data()), header.size() * sizeof(int32_t));
    out.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(uint32_t));
  };
  write(Path("llama.bin"));
  std::vector<std::string> args = Tiny(3);
  args[1] = Path("llama.bin");
  const Result run = RunStrataGpt(With(args, {"--vocab", "66000"}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("4096 tokens (llm.c uint32), vocab 66000"));
  tokens[2000] = 66000;
  write(Path("llama.bin"));
  ExpectCleanError(RunStrataGpt(With(args, {"--vocab", "66000"})), 1,
                   Path("llama.bin") + ": token id 66000 at position 2000 (of 4096) does not fit "
                   "the vocabulary of 66000 (--vocab)");
}

// A GPT-2 file as `transformers` writes it (vocab 256, 64 positions, 2 layers, width 64, 4 heads):
// the shape comes from the file, the heads from the config.json beside it.
TEST_F(StrataGptTest, InitFromATransformersCheckpoint) {
  const fs::path root = STRATA_SOURCE_ROOT;
  fs::create_directories(Path("gpt2"));
  fs::copy_file(root / "tests/fixtures/graph/hf_gpt2_model.safetensors",
                Path("gpt2/model.safetensors"));
  const std::vector<std::string> args = {"--data", Path("corpus.txt"), "--init-from",
                                         Path("gpt2/model.safetensors"), "--seq", "32",
                                         "--batch", "2", "--steps", "3", "--threads", "1"};
  Result run = RunStrataGpt(args);
  ExpectCleanError(run, 2, "pass --heads");

  std::ofstream(Path("gpt2/config.json")) << R"({"model_type": "gpt2", "n_head": 4})";
  run = RunStrataGpt(args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("vocab 256, 2 layers, width 64, 4 heads"));
  EXPECT_THAT(run.output, HasSubstr("loaded weights from"));

  ExpectCleanError(RunStrataGpt(With(args, {"--heads", "2"})), 2, "--heads 2 differs from n_head 4");
  // A shape flag given explicitly must agree with the file; the ones left out come from it.
  ExpectCleanError(RunStrataGpt(With(args, {"--width", "96"})), 2,
                   "--width 96 differs from 64 in --init-from");
  ExpectCleanError(RunStrataGpt(With(args, {"--layers", "3"})), 2,
                   "--layers 3 differs from 2 in --init-from");
  ExpectCleanError(RunStrataGpt(With(args, {"--vocab", "50257"})), 2,
                   "--vocab 50257 differs from 256 in --init-from");
  ExpectCleanError(RunStrataGpt(With(args, {"--seq", "65"})), 2, "--seq 65 exceeds the 64 positions");
  run = RunStrataGpt(With(args, {"--width", "64", "--layers", "2", "--heads", "4"}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
}

// A safetensors file of the given f32 tensors (name, shape), all zeros.
void WriteZeroSafetensors(const std::string& path,
                          const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, shape] : tensors) {
    uint64_t n = 4;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  const std::string text = header.dump();
  const uint64_t size = text.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&size), 8);
  out << text << std::string(offset, '\0');
}

TEST_F(StrataGptTest, AnInitFromFileOfWrongRanksIsNamed) {
  WriteZeroSafetensors(Path("rank1.safetensors"),
                       {{"wte.weight", {256}}, {"wpe.weight", {64, 32}}, {"h.0.ln_1.weight", {32}}});
  ExpectCleanError(RunStrataGpt({"--data", Path("corpus.txt"), "--init-from",
                                 Path("rank1.safetensors"), "--heads", "2", "--steps", "3"}),
                   1, "wte.weight [256] and wpe.weight [64, 32] are not (vocab, width)");
}

TEST_F(StrataGptTest, ATokenFileCanComeFromAPipe) {
  const std::string cat = absl::StrCat("cat ", Path("corpus.txt"), " | ", STRATA_GPT_BINARY);
  std::vector<std::string> args = Tiny(3);
  args[1] = "/dev/stdin";
  const Result run = RunBinary(cat.c_str(), args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr(absl::StrCat("/dev/stdin, ", fs::file_size(Path("corpus.txt")),
                                                 " tokens (bytes)")));
}

// Every numeric flag outside its range, and flags that contradict each other, are usage errors
// (exit 2) naming the flag.
TEST_F(StrataGptTest, NumericFlagsOutsideTheirRangeAreUsageErrors) {
  const std::vector<std::vector<std::string>> cases = {
      {"--log-every", "0"}, {"--batch", "-4"}, {"--val-fraction", "-0.1"},
      {"--val-fraction", "1"}, {"--layers", "0"}, {"--width", "0"}, {"--heads", "-1"},
      {"--seq", "0"}, {"--micro-batches", "0"}, {"--vocab", "-1"}, {"--steps", "-1"},
      {"--stop-at", "-1"}, {"--lr", "-1"}, {"--lr", "inf"}, {"--min-lr", "nan"},
      {"--warmup", "-1"}, {"--beta1", "1"}, {"--beta2", "-0.5"}, {"--eps", "0"},
      {"--weight-decay", "-1"}, {"--clip", "-1"}, {"--seed", "-3"}, {"--save-every", "-1"},
      {"--eval-every", "-1"}, {"--eval-batches", "0"}, {"--threads", "-2"},
      {"--batch", "99999999999999999999"}};
  for (const std::vector<std::string>& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c, " "));
    ExpectCleanError(RunStrataGpt(With(Tiny(3), c)), 2,
                     absl::StrCat(c[0], " ", c[1], " is outside its range"));
  }
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--eval-every", "2", "--val-fraction", "0"})), 2,
                   "--eval-every 2 needs held-out tokens, but --val-fraction is 0");
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--stop-at", "4"})), 2, "--stop-at 4 is past --steps 3");
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--min-lr", "1"})), 2, "--min-lr 1 exceeds --lr");
  ExpectCleanError(RunStrataGpt({"--steps", "3"}), 2, "--data FILE is required");
  ExpectCleanError(RunStrataGpt(With(Tiny(0), {})), 2,
                   "--steps 0 trains nothing: it writes the model as it starts, with --export FILE");
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--resume", Path("a"), "--init-from", Path("b")})),
                   2, "--resume and --init-from contradict each other");
  // Too few held-out tokens for one batch is the data's fault: a run-time error.
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--eval-every", "2", "--val-fraction", "1e-6"})),
                   1, "held out (--val-fraction)");
}

// The offload flags (examples/common/offload_flags.h) are checked before any data is read, the
// same way in both programs: usage errors naming the flag.
std::vector<std::pair<std::vector<std::string>, std::string>> BadOffloadFlags() {
  return {{{"--host-budget", "4X"}, "--host-budget expects a size, got '4X': unknown unit 'X'"},
          {{"--device-budget", "-512M"}, "--device-budget expects a size, got '-512M': a size "
                                         "cannot be negative"},
          {{"--prefetch-bytes", "99999999999999999999"},
           "--prefetch-bytes 99999999999999999999 is outside its range [0, 1024T]"},
          {{"--offload-params", "ssd"}, "--offload-params ssd: expected none, host or nvme"},
          {{"--offload-optimizer", "nvme"}, "--offload-optimizer nvme needs --nvme-dir DIR"},
          {{"--nvme-dir", "/tmp"}, "--nvme-dir /tmp is given but no state is placed on nvme"},
          {{"--offload-grads", "host", "--io-engine", "uring"},
           "--io-engine configures the NVMe engine, but no state is placed on nvme"},
          {{"--offload-params", "nvme", "--nvme-dir", "/tmp", "--io-block-size", "5000"},
           "--io-block-size 5000 is not a multiple of 4096"}};
}

TEST_F(StrataGptTest, OffloadFlagsAreCheckedAndNamed) {
  for (const auto& [args, message] : BadOffloadFlags()) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    ExpectCleanError(RunStrataGpt(With(Tiny(3), args)), 2, message);
  }
  const Result help = RunStrataGpt({"--help"});
  EXPECT_THAT(help.output, HasSubstr("sizes are bytes with an optional binary unit"));
}

TEST(FmnistExampleTest, OffloadFlagsAreCheckedAndNamed) {
  for (const auto& [args, message] : BadOffloadFlags()) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, args), 2, message);
  }
  const Result help = RunBinary(STRATA_FMNIST_BINARY, {"--help"});
  EXPECT_THAT(help.output, HasSubstr("--offload-optimizer"));
  EXPECT_THAT(help.output, HasSubstr("sizes are bytes with an optional binary unit"));
}

// Bad input to training with state on NVMe: directories that cannot hold the swap file, a file
// system that fills up, one without O_DIRECT, and io_uring refused. Each is exit 1 (a run-time
// error) with one line naming the directory, errno or bytes. Mounting needs root; elsewhere those
// tests skip.
using offload::testing::Mount;
using offload::testing::TempDir;

// Blocks of 64 KiB keep the pinned staging buffers (48 of them) under the 8 MiB that
// RLIMIT_MEMLOCK allows an unprivileged user by default. Every parameter of the tiny model is
// under the default persistence threshold: 0 offloads them all.
std::vector<std::string> AllOnNvme(const std::string& dir, const std::string& block = "64K") {
  return {"--offload-params", "nvme", "--offload-grads", "nvme", "--offload-optimizer", "nvme",
          "--nvme-dir", dir, "--io-block-size", block, "--offload-persistence-threshold", "0"};
}

int Occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Every file of a checkpoint directory and its bytes.
std::map<std::string, std::string> Files(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    files[e.path().filename().string()] =
        std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return files;
}

// --offload-persistence-threshold: the tiny model's parameters all have fewer than 5000 elements
// but the embedding (vocabulary 256 x width 32, tied to the head), so with 5000 only its four
// arrays (parameter, gradient, two moments) go to NVMe; with the default (100000) none does. The
// losses are the in-memory run's either way.
TEST_F(StrataGptTest, ParametersUnderThePersistenceThresholdStayOnTheDevice) {
  const Result memory = RunStrataGpt(With(Tiny(4), {"--metrics", Path("memory.jsonl")}));
  ASSERT_EQ(memory.exit_code, 0) << memory.output;
  const std::vector<nlohmann::json> want = ReadMetrics(Path("memory.jsonl"));
  const std::vector<std::string> on_nvme = {"--offload-params", "nvme", "--offload-grads", "nvme",
                                            "--offload-optimizer", "nvme", "--nvme-dir", Path(""),
                                            "--io-block-size", "64K"};
  for (const auto& [threshold, nvme_bytes] : {std::pair{"5000", 4 * 256 * 32 * 4}, {"", 0}}) {
    SCOPED_TRACE(absl::StrCat("threshold '", threshold, "'"));
    std::vector<std::string> args = With(With(Tiny(4), on_nvme), {"--metrics", Path("nvme.jsonl")});
    if (*threshold != '\0') args = With(args, {"--offload-persistence-threshold", threshold});
    const Result run = RunStrataGpt(args);
    ASSERT_EQ(run.exit_code, 0) << run.output;
    EXPECT_THAT(run.output, HasSubstr(absl::StrCat("parameters under ",
                                                   *threshold != '\0' ? threshold : "100000",
                                                   " elements stay on the device")));
    const std::vector<nlohmann::json> got = ReadMetrics(Path("nvme.jsonl"));
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].at("loss").get<double>(), want[i].at("loss").get<double>()) << "step " << i + 1;
      EXPECT_EQ(got[i].at("peak_bytes").at("nvme").get<int64_t>(), nvme_bytes);
    }
  }
}

TEST_F(StrataGptTest, AnNvmeDirThatIsNoDirectoryIsNamed) {
  ExpectCleanError(RunStrataGpt(With(Tiny(3), AllOnNvme(Path("missing")))), 1,
                   "io dir '" + Path("missing") + "': stat: No such file or directory (ENOENT)");
  ExpectCleanError(RunStrataGpt(With(Tiny(3), AllOnNvme(Path("corpus.txt")))), 1,
                   "io dir '" + Path("corpus.txt") + "': not a directory: Not a directory (ENOTDIR)");
}

TEST_F(StrataGptTest, AnUnwritableNvmeDirIsNamed) {
  std::string why;
  std::optional<Mount> ro = Mount::Make("tmpfs", "size=1m", /*read_only=*/true, &why);
  if (!ro) GTEST_SKIP() << why << " (a read-only mount is what stops root from writing)";
  ExpectCleanError(RunStrataGpt(With(Tiny(3), AllOnNvme(ro->path()))), 1,
                   "io dir '" + ro->path() +
                       "': cannot create the swap file: Read-only file system (EROFS)");
}

// A resume whose --nvme-dir cannot hold the model's state fails before it trains or saves: the
// checkpoint it was to resume (and to overwrite) is untouched, and resumes in memory to the losses
// of a run never interrupted.
TEST_F(StrataGptTest, AFullNvmeDirFailsTheResumeAndLosesNothing) {
  std::string why;
  std::optional<Mount> roomy = Mount::Make("tmpfs", "size=64m", /*read_only=*/false, &why);
  if (!roomy) GTEST_SKIP() << why;
  // The tiny model's states take about 0.8 MiB on nvme.
  std::optional<Mount> full = Mount::Make("tmpfs", "size=256k", /*read_only=*/false, &why);
  ASSERT_TRUE(full) << why;

  const Result straight = RunStrataGpt(With(Tiny(6), {"--metrics", Path("straight.jsonl")}));
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  const Result half = RunStrataGpt(
      With(With(Tiny(6), AllOnNvme(roomy->path())),
           {"--save", Path("ckpt"), "--stop-at", "3", "--metrics", Path("half.jsonl")}));
  ASSERT_EQ(half.exit_code, 0) << half.output;
  const int64_t on_nvme = ReadMetrics(Path("half.jsonl")).at(0).at("peak_bytes").at("nvme");
  ASSERT_GT(on_nvme, 256 << 10) << "the state must not fit the full file system";
  const std::map<std::string, std::string> saved = Files(Path("ckpt"));
  ASSERT_FALSE(saved.empty());

  const Result refused = RunStrataGpt(
      With(With(Tiny(6), AllOnNvme(full->path())), {"--resume", Path("ckpt"), "--save", Path("ckpt")}));
  ExpectCleanError(refused, 1, "in io dir '" + full->path() + "'");
  EXPECT_THAT(refused.output, HasSubstr("No space left on device (ENOSPC)"));
  EXPECT_THAT(refused.output, HasSubstr("nvme engine: cannot reserve "));
  EXPECT_THAT(refused.output, HasSubstr(absl::StrCat("the plan places ", on_nvme,
                                                     " bytes of state on nvme (value %")));
  EXPECT_THAT(refused.output, Not(HasSubstr("resumed from")));
  EXPECT_TRUE(fs::is_empty(full->path())) << "the swap file is unlinked";
  EXPECT_EQ(Files(Path("ckpt")), saved) << "the checkpoint is untouched";

  const Result resumed =
      RunStrataGpt(With(Tiny(6), {"--resume", Path("ckpt"), "--metrics", Path("resumed.jsonl")}));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("at step 3"));
  const std::vector<nlohmann::json> a = ReadMetrics(Path("straight.jsonl"));
  const std::vector<nlohmann::json> b = ReadMetrics(Path("resumed.jsonl"));
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(b[i].at("step"), a[i + 3].at("step"));
    // Bitwise: placement does not change the math (Note [placement is not part of the run]).
    EXPECT_EQ(b[i].at("loss").get<double>(), a[i + 3].at("loss").get<double>()) << "step " << i + 4;
  }
}

// ramfs refuses O_DIRECT: auto trains buffered, announced once, to the losses of a run in memory;
// on is an error naming the directory.
TEST_F(StrataGptTest, AnNvmeDirWithoutODirectFallsBackOrFailsWhenOn) {
  std::string why;
  std::optional<Mount> ramfs = Mount::Make("ramfs", "", /*read_only=*/false, &why);
  if (!ramfs) GTEST_SKIP() << why;
  const Result in_memory = RunStrataGpt(With(Tiny(3), {"--metrics", Path("memory.jsonl")}));
  ASSERT_EQ(in_memory.exit_code, 0) << in_memory.output;
  const Result buffered = RunStrataGpt(
      With(With(Tiny(3), AllOnNvme(ramfs->path())), {"--metrics", Path("buffered.jsonl")}));
  ASSERT_EQ(buffered.exit_code, 0) << buffered.output;
  const std::string announced =
      "strata: " + ramfs->path() + " does not support O_DIRECT (EINVAL); using buffered IO\n";
  EXPECT_EQ(Occurrences(buffered.output, announced), 1) << buffered.output;
  EXPECT_EQ(Occurrences(buffered.output, "O_DIRECT"), 1) << buffered.output;
  EXPECT_THAT(buffered.output, HasSubstr(", buffered, block "));
  const std::vector<nlohmann::json> a = ReadMetrics(Path("memory.jsonl"));
  const std::vector<nlohmann::json> b = ReadMetrics(Path("buffered.jsonl"));
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i].at("loss").get<double>(), a[i].at("loss").get<double>()) << "step " << i + 1;
    EXPECT_GT(b[i].at("io_write_bytes").get<int64_t>(), 0) << "step " << i + 1;
  }

  ExpectCleanError(RunStrataGpt(With(With(Tiny(3), AllOnNvme(ramfs->path())), {"--io-direct", "on"})),
                   1, "io dir '" + ramfs->path() + "' does not support O_DIRECT (Invalid argument "
                      "(EINVAL)) but direct IO is 'on'");
}

// STRATA_IO_URING_DISABLE=1 makes io_uring look refused: uring is an error, auto falls back to
// the thread pool, announced once. Buffered, so that no root or O_DIRECT-capable disk is needed.
TEST_F(StrataGptTest, RefusedIoUringFailsWhenAskedForAndFallsBackOnAuto) {
  TempDir swap;
  const std::string refused_env = absl::StrCat("STRATA_IO_URING_DISABLE=1 ", STRATA_GPT_BINARY);
  const std::vector<std::string> args =
      With(With(Tiny(3), AllOnNvme(swap.path())), {"--io-direct", "off"});
  ExpectCleanError(RunBinary(refused_env.c_str(), With(args, {"--io-engine", "uring"})), 1,
                   "io engine 'uring': the kernel refused io_uring (EPERM: Operation not permitted "
                   "[STRATA_IO_URING_DISABLE=1]): use 'auto' or 'threads'");
  const Result fallback = RunBinary(refused_env.c_str(), With(args, {"--io-engine", "auto"}));
  ASSERT_EQ(fallback.exit_code, 0) << fallback.output;
  EXPECT_EQ(Occurrences(fallback.output,
                        "strata: io_uring refused (EPERM: Operation not permitted "
                        "[STRATA_IO_URING_DISABLE=1]); using the thread-pool engine\n"),
            1)
      << fallback.output;
  EXPECT_EQ(Occurrences(fallback.output, "io_uring"), 1) << fallback.output;
  EXPECT_THAT(fallback.output, HasSubstr("io     threads ("));
  EXPECT_THAT(fallback.output, HasSubstr("strata-gpt: done at step 3"));
}

// Staging buffers are pinned: past RLIMIT_MEMLOCK (8 MiB, without CAP_IPC_LOCK, which root
// drops here) the error says they follow the io block size, and a smaller block trains.
TEST_F(StrataGptTest, StagingOverTheMemlockLimitNamesTheBlockSize) {
  TempDir swap;
  const std::string limited =
      absl::StrCat("ulimit -l 8192 && ", geteuid() == 0 ? "setpriv --bounding-set=-ipc_lock " : "",
                   STRATA_GPT_BINARY);
  // Buffered: O_DIRECT on a virtual disk can take a second per step.
  const Result refused = RunBinary(
      limited.c_str(), With(With(Tiny(3), AllOnNvme(swap.path(), "1M")), {"--io-direct", "off"}));
  ExpectCleanError(refused, 1, "cannot pin 50331648 bytes");
  EXPECT_THAT(refused.output, HasSubstr("RLIMIT_MEMLOCK is 8388608 bytes"));
  EXPECT_THAT(refused.output, HasSubstr("(the 50331648 bytes are the staging buffers: 12 chunks of "
                                        "4 io blocks of 1048576 bytes; a smaller io block size "
                                        "needs fewer)"));
  const Result small = RunBinary(
      limited.c_str(), With(With(Tiny(3), AllOnNvme(swap.path(), "64K")), {"--io-direct", "off"}));
  ASSERT_EQ(small.exit_code, 0) << small.output;
  EXPECT_THAT(small.output, HasSubstr("strata-gpt: done at step 3"));
}

// --param-group: the groups in the startup summary, errors named with exit code 2, and a resume
// with other groups than the checkpoint's refused by name.
TEST_F(StrataGptTest, ParamGroupsAreSummarizedCheckedAndRecorded) {
  const std::vector<std::string> groups = {"--param-group", "'*.bias:weight_decay=0'",
                                           "--param-group", "'h.*:lr_scale=0.5'"};
  const Result run = RunStrataGpt(With(With(Tiny(3), groups), {"--save", Path("ckpt")}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  // 2 blocks of 6 biases, and ln_f's; h.* takes the blocks' 12 other tensors.
  EXPECT_THAT(run.output, HasSubstr("parameter groups (first match wins):\n  *.bias -> 13 tensors, "));
  EXPECT_THAT(run.output, HasSubstr("lr x1, weight decay 0\n  h.* -> 12 tensors, "));
  EXPECT_THAT(run.output, HasSubstr("  (no group) -> 3 tensors, "));
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--param-group", "'h.*.atn.*:lr_scale=0'"})), 2,
                   "--param-group: optimizer: group 1 ('h.*.atn.*') matches no parameter");
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--param-group", "'*.bias:wd=0'"})), 2,
                   "--param-group '*.bias:wd=0': unknown setting 'wd'");
  ExpectCleanError(RunStrataGpt(With(Tiny(4), {"--resume", Path("ckpt")})), 2,
                   "the checkpoint's run has --param-group *.bias:lr_scale=1,weight_decay=0; "
                   "h.*:lr_scale=0.5,weight_decay=default, this run has --param-group none");
  const Result resumed = RunStrataGpt(With(With(Tiny(4), groups), {"--resume", Path("ckpt")}));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("resumed from " + Path("ckpt") + " at step 3"));
  EXPECT_THAT(RunStrataGpt({"--help"}).output, HasSubstr("--param-group"));
}

TEST_F(StrataGptTest, HelpStatesEachRangeAndWhatZeroMeans) {
  const Result run = RunStrataGpt({"--help"});
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("clip the global gradient norm to this; [0, 1e+09], 0: off"));
  EXPECT_THAT(run.output, HasSubstr("--log-every       steps between progress lines; [1, "));
  EXPECT_THAT(run.output, HasSubstr("AdamW beta2; [0, 1)"));
  EXPECT_THAT(run.output, HasSubstr("exit codes: 0 success, 1 run-time error"));
  EXPECT_THAT(run.output, HasSubstr("--export"));
  EXPECT_THAT(run.output, HasSubstr("in Hugging Face layout (GPT2LMHeadModel"));
  EXPECT_THAT(run.output, HasSubstr("--kv-heads        Llama: key/value heads"));
}

TEST_F(StrataGptTest, BadFlagsAndFilesAreNamed) {
  Result run = RunStrataGpt({"--data", Path("nope.txt")});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("nope.txt"));

  ExpectCleanError(RunStrataGpt(With(Tiny(2), {"--schedule", "linear"})), 2,
                   "--schedule linear: expected constant or cosine");

  run = RunStrataGpt(With(Tiny(2), {"--steps-typo", "3"}));
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("--steps-typo"));

  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--warmup", "5"})), 2,
                   "--warmup 5 must be below --steps 3");

  std::vector<std::string> args = Tiny(2);
  args[7] = "3";
  ExpectCleanError(RunStrataGpt(args), 2, "--heads 3 does not divide --width 32");
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// --export writes the trained model in Hugging Face GPT-2 layout with the config.json beside it.
// strata-gpt reads it back with --init-from (the heads from that config.json) and, with
// --steps 0, exports the same bytes again; a checkpoint resumed at its last step exports them too.
TEST_F(StrataGptTest, ExportRoundTripsThroughInitFromAndResume) {
  for (const char* d : {"a", "b", "c"}) fs::create_directories(Path(d));
  const Result trained = RunStrataGpt(
      With(Tiny(3), {"--save", Path("ckpt"), "--export", Path("a/model.safetensors")}));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_THAT(trained.output, HasSubstr("exported " + Path("a/model.safetensors") + " ("));
  EXPECT_THAT(trained.output, HasSubstr(Path("a/config.json") + " at step 3"));
  nlohmann::json config;
  {
    std::ifstream in(Path("a/config.json"));
    in >> config;
  }
  EXPECT_EQ(config.at("model_type"), "gpt2");
  EXPECT_EQ(config.at("n_head"), 2);
  EXPECT_EQ(config.at("n_layer"), 2);
  EXPECT_EQ(config.at("n_embd"), 32);
  EXPECT_EQ(config.at("n_positions"), 16);
  EXPECT_EQ(config.at("vocab_size"), 256);
  EXPECT_EQ(config.at("activation_function"), "gelu_new");

  const Result again =
      RunStrataGpt({"--data", Path("corpus.txt"), "--init-from", Path("a/model.safetensors"),
                    "--steps", "0", "--threads", "1", "--export", Path("b/model.safetensors")});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("2 layers, width 32, 2 heads"));
  EXPECT_THAT(again.output, HasSubstr("strata-gpt: done at step 0"));
  EXPECT_EQ(FileBytes(Path("b/model.safetensors")), FileBytes(Path("a/model.safetensors")));
  EXPECT_EQ(FileBytes(Path("b/config.json")), FileBytes(Path("a/config.json")));

  const Result resumed =
      RunStrataGpt(With(Tiny(3), {"--resume", Path("ckpt"), "--export", Path("c/model.safetensors")}));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, Not(HasSubstr("step     ")));  // nothing left to train
  EXPECT_EQ(FileBytes(Path("c/model.safetensors")), FileBytes(Path("a/model.safetensors")));
}

// --arch llama: trains, exports LlamaForCausalLM's files, starts again from them (bitwise the
// same export), resumes, and starts from a file transformers wrote.
TEST_F(StrataGptTest, LlamaExportsInitsFromItsExportAndResumes) {
  for (const char* d : {"a", "b", "c", "hf"}) fs::create_directories(Path(d));
  const std::vector<std::string> llama = With(Tiny(3), {"--arch", "llama", "--kv-heads", "1"});
  const Result trained =
      RunStrataGpt(With(llama, {"--save", Path("ckpt"), "--export", Path("a/model.safetensors")}));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_THAT(trained.output, HasSubstr("Llama, 2 layers, width 32, 2 heads (1 key/value), ffn 128"));
  EXPECT_THAT(trained.output, HasSubstr("in Hugging Face LlamaForCausalLM layout"));
  nlohmann::json config;
  {
    std::ifstream in(Path("a/config.json"));
    in >> config;
  }
  EXPECT_EQ(config.at("model_type"), "llama");
  EXPECT_EQ(config.at("num_key_value_heads"), 1);
  EXPECT_EQ(config.at("intermediate_size"), 128);
  EXPECT_EQ(config.at("max_position_embeddings"), 16);

  const Result again = RunStrataGpt({"--arch", "llama", "--data", Path("corpus.txt"), "--init-from",
                                     Path("a/model.safetensors"), "--steps", "0", "--threads", "1",
                                     "--export", Path("b/model.safetensors")});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(FileBytes(Path("b/model.safetensors")), FileBytes(Path("a/model.safetensors")));
  EXPECT_EQ(FileBytes(Path("b/config.json")), FileBytes(Path("a/config.json")));
  const Result resumed =
      RunStrataGpt(With(llama, {"--resume", Path("ckpt"), "--export", Path("c/model.safetensors")}));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(FileBytes(Path("c/model.safetensors")), FileBytes(Path("a/model.safetensors")));
  // A GPT run refuses the Llama checkpoint.
  const Result as_gpt = RunStrataGpt(With(Tiny(4), {"--resume", Path("ckpt")}));
  EXPECT_NE(as_gpt.exit_code, 0);

  const fs::path root = STRATA_SOURCE_ROOT;
  fs::copy_file(root / "tests/fixtures/graph/hf_llama_model.safetensors", Path("hf/model.safetensors"));
  const std::vector<std::string> hf = {"--arch", "llama", "--data", Path("corpus.txt"), "--init-from",
                                       Path("hf/model.safetensors"), "--seq", "32", "--batch", "2",
                                       "--steps", "2", "--threads", "1"};
  ExpectCleanError(RunStrataGpt(hf), 1, "needs the config.json beside it");
  fs::copy_file(root / "tests/fixtures/graph/hf_llama_config.json", Path("hf/config.json"));
  const Result from_hf = RunStrataGpt(hf);
  ASSERT_EQ(from_hf.exit_code, 0) << from_hf.output;
  EXPECT_THAT(from_hf.output, HasSubstr("vocab 300, Llama, 2 layers, width 64, 4 heads (2 key/value), ffn 96"));
  EXPECT_THAT(from_hf.output, HasSubstr("loaded weights from"));
  ExpectCleanError(RunStrataGpt(With(hf, {"--kv-heads", "4"})), 2,
                   "--kv-heads 4 differs from num_key_value_heads 2");
  ExpectCleanError(RunStrataGpt(With(hf, {"--seq", "65"})), 2,
                   "--seq 65 exceeds max_position_embeddings 64");
  ExpectCleanError(RunStrataGpt(With(hf, {"--rope-theta", "500000"})), 2,
                   "--rope-theta comes from the config.json");
}

// A sparse fine-tune of a Llama (--sparse-update, partial channels included): what the rules
// freeze leaves the export bitwise as it started, what they train moves.
TEST_F(StrataGptTest, LlamaFineTunesSparsely) {
  for (const char* d : {"a", "b"}) fs::create_directories(Path(d));
  const std::vector<std::string> llama = With(Tiny(3), {"--arch", "llama", "--kv-heads", "1"});
  ASSERT_EQ(RunStrataGpt(With(llama, {"--export", Path("a/model.safetensors")})).exit_code, 0);
  std::ofstream(Path("rules.json")) << R"([{"match": "*", "update": "frozen"},
      {"match": "model.layers.1.*", "update": "full"},
      {"match": "model.layers.0.mlp.*", "update": "channels:0.5"}])";
  const Result tuned = RunStrataGpt(
      {"--arch", "llama", "--data", Path("corpus.txt"), "--init-from", Path("a/model.safetensors"),
       "--seq", "16", "--batch", "4", "--steps", "3", "--lr", "1e-2", "--threads", "1",
       "--sparse-update", Path("rules.json"), "--export", Path("b/model.safetensors")});
  ASSERT_EQ(tuned.exit_code, 0) << tuned.output;
  EXPECT_THAT(tuned.output, HasSubstr("model.layers.0.mlp.gate_proj.weight (16 of 32 channels)"));
  const SafetensorsFile before = SafetensorsFile::Read(Path("a/model.safetensors"), DefaultCpuAllocator()).value();
  const SafetensorsFile after = SafetensorsFile::Read(Path("b/model.safetensors"), DefaultCpuAllocator()).value();
  auto same = [&](const std::string& name) {
    const Tensor x = before.Get(name).value(), y = after.Get(name).value();
    return std::equal(x.data<float>(), x.data<float>() + x.numel(), y.data<float>());
  };
  for (const char* frozen : {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                             "model.layers.0.self_attn.q_proj.weight",
                             "model.layers.0.input_layernorm.weight"}) {
    EXPECT_TRUE(same(frozen)) << frozen;
  }
  for (const char* trained : {"model.layers.1.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight",
                              "model.layers.0.mlp.up_proj.weight"}) {
    EXPECT_FALSE(same(trained)) << trained;
  }
  // channels:0.5 trains the first half of gate_proj's input channels only.
  const Tensor x = before.Get("model.layers.0.mlp.gate_proj.weight").value();
  const Tensor y = after.Get("model.layers.0.mlp.gate_proj.weight").value();
  for (int64_t r = 0; r < x.dim(0); ++r) {
    for (int64_t c = 16; c < 32; ++c) {
      ASSERT_EQ(x.data<float>()[r * 32 + c], y.data<float>()[r * 32 + c]) << "row " << r << " column " << c;
    }
  }
}

// --sparse-budget on the Llama: its units are its own (no biases: the embedding, each layer at
// every ratio, the final norm and the untied head), and the choice fits the budget.
TEST_F(StrataGptTest, LlamaSparseBudgetChoosesWithinTheBudget) {
  const Result run = RunStrataGpt(With(Tiny(3), {"--arch", "llama", "--kv-heads", "1",
                                                 "--sparse-budget", "700K",
                                                 "--sparse-budget-batches", "2"}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("sparse budget 700K: measuring 11 units, 2 steps each"));
  for (const char* unit : {"model.embed_tokens.weight full", "model.layers.0 channels:0.25",
                           "model.layers.1 channels:0.5", "model.layers.1 full",
                           "model.norm.weight full", "lm_head channels:0.25", "lm_head full"}) {
    EXPECT_THAT(run.output, HasSubstr(unit));
  }
  EXPECT_THAT(run.output, ::testing::Not(HasSubstr("biases of the last")));
  // 700 KiB is 0.68 MiB, printed to a tenth.
  ExpectChoiceBeforeStepOne(run.output, "0.7 MiB", 0.7);
  // Training every unit plans more than the budget, so something is left out.
  EXPECT_THAT(run.output, ::testing::ContainsRegex("sparse update: [0-9]+ of 21 tensors trained"));
  EXPECT_THAT(run.output, ::testing::Not(HasSubstr("sparse update: 21 of 21")));
  EXPECT_THAT(run.output, HasSubstr("strata-gpt: done at step 3"));
}

TEST_F(StrataGptTest, ArchitectureFlagsAreChecked) {
  ExpectCleanError(RunStrataGpt(With(Tiny(1), {"--kv-heads", "1"})), 2,
                   "--kv-heads is a Llama flag: add --arch llama");
  ExpectCleanError(RunStrataGpt(With(Tiny(1), {"--arch", "bert"})), 2,
                   "--arch bert: expected gpt or llama");
  ExpectCleanError(RunStrataGpt(With(Tiny(1), {"--arch", "llama", "--kv-heads", "3", "--heads", "4",
                                               "--width", "32"})),
                   2, "--kv-heads 3 does not divide --heads 4");
}

// Placement does not change the math, and the export reads parameters wherever they live.
TEST_F(StrataGptTest, ExportWithStateOnNvmeWritesTheSameBytes) {
  TempDir swap;
  const Result in_memory = RunStrataGpt(With(Tiny(3), {"--export", Path("memory.safetensors")}));
  ASSERT_EQ(in_memory.exit_code, 0) << in_memory.output;
  const Result offloaded = RunStrataGpt(
      With(With(Tiny(3), AllOnNvme(swap.path())),
           {"--io-direct", "off", "--export", Path("nvme.safetensors")}));
  ASSERT_EQ(offloaded.exit_code, 0) << offloaded.output;
  EXPECT_THAT(offloaded.output, HasSubstr("nvme"));
  EXPECT_EQ(FileBytes(Path("nvme.safetensors")), FileBytes(Path("memory.safetensors")));
  EXPECT_GT(FileBytes(Path("memory.safetensors")).size(), 100000u);
}

// Every file in `dir`, to show that a failed export leaves nothing behind.
std::vector<std::string> Listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A directory the export cannot write to is found before the run trains; a write that fails at
// the end (here: over the file size limit, as a full disk would) names the file and errno, and
// leaves the previous export as it was and no temporary file.
TEST_F(StrataGptTest, AnExportThatCannotBeWrittenIsNamedAndLeavesNoPartialFile) {
  const std::string missing = Path("missing/model.safetensors");
  Result run = RunStrataGpt(With(Tiny(3), {"--export", missing}));
  ExpectCleanError(run, 1, "--export " + missing + ": cannot write in " + Path("missing") +
                               ": No such file or directory (ENOENT)");
  EXPECT_THAT(run.output, Not(HasSubstr("step ")));
  fs::create_directories(Path("dir.safetensors"));
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--export", Path("dir.safetensors")})), 1,
                   "--export " + Path("dir.safetensors") + " is a directory");
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--export", Path("config.json")})), 2,
                   "the config.json written beside the weights would replace them");

  fs::create_directories(Path("out"));
  const std::string model = Path("out/model.safetensors");
  ASSERT_EQ(RunStrataGpt(With(Tiny(3), {"--seed", "7", "--export", model})).exit_code, 0);
  const std::string before = FileBytes(model);
  // dash's ulimit -f counts 512-byte blocks: 64 KiB, less than the 139 KiB file. SIGXFSZ ignored,
  // so that write() fails with EFBIG instead of the signal ending the process.
  const std::string limited = absl::StrCat("ulimit -f 128 && trap '' XFSZ && ", STRATA_GPT_BINARY);
  run = RunBinary(limited.c_str(), With(Tiny(3), {"--export", model}));
  ExpectCleanError(run, 1, "writing " + model + ".tmp failed: File too large (EFBIG)");
  EXPECT_THAT(run.output, HasSubstr("step     3/3"));  // it failed at the end, after training
  EXPECT_EQ(FileBytes(model), before);
  EXPECT_EQ(Listing(Path("out")), (std::vector<std::string>{"config.json", "model.safetensors"}));

  std::string why;
  std::optional<Mount> ro = Mount::Make("tmpfs", "size=1m", /*read_only=*/true, &why);
  if (!ro) GTEST_SKIP() << why << " (a read-only mount is what stops root from writing)";
  ExpectCleanError(RunStrataGpt(With(Tiny(3), {"--export", ro->path() + "/model.safetensors"})), 1,
                   "cannot write in " + ro->path() + ": Read-only file system (EROFS)");
  EXPECT_TRUE(fs::is_empty(ro->path()));
}

// strata-fmnist on a slice of Fashion-MNIST (Debian's dataset-fashion-mnist): one JSON line per
// step and one per epoch, whose test_accuracy is a fraction well above chance (10%).
TEST(FmnistExampleTest, ReportsTestAccuracyPerEpoch) {
  const fs::path data = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(data / "t10k-labels-idx1-ubyte.gz")) {
    GTEST_SKIP() << data << " not installed (launch/setup installs dataset-fashion-mnist)";
  }
  const fs::path metrics = fs::temp_directory_path() / absl::StrCat("strata_fmnist_", getpid());
  const Result run = RunBinary(
      STRATA_FMNIST_BINARY, {"--epochs", "2", "--limit-train", "2048", "--limit-test", "512",
                             "--warmup", "10", "--init-images", "256", "--threads", "1",
                             "--metrics", metrics.string()});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::vector<nlohmann::json> epochs;
  int steps = 0;
  for (const nlohmann::json& r : ReadMetrics(metrics)) {
    if (r.contains("test_accuracy")) {
      epochs.push_back(r);
    } else {
      EXPECT_TRUE(r.at("loss").is_number());
      EXPECT_GT(r.at("peak_bytes").at("device").get<int64_t>(), 0);
      EXPECT_EQ(r.at("io_wait_ms").get<double>(), 0.0);
      EXPECT_EQ(r.at("io_read_bytes").get<int64_t>(), 0);
      EXPECT_EQ(r.at("io_write_bytes").get<int64_t>(), 0);
      ++steps;
    }
  }
  fs::remove(metrics);
  EXPECT_EQ(steps, 2 * 2048 / 64);
  ASSERT_EQ(epochs.size(), 2u);
  for (const nlohmann::json& e : epochs) {
    const double accuracy = e.at("test_accuracy").get<double>();
    EXPECT_GT(accuracy, 0.3);  // a fraction, not a percentage, and above chance
    EXPECT_LE(accuracy, 1.0);
  }
  EXPECT_EQ(epochs[1].at("epoch").get<int>(), 2);
  EXPECT_FALSE(epochs[0].contains("peak_rss_bytes"));
  EXPECT_GT(epochs[1].at("peak_rss_bytes").get<int64_t>(), 10 << 20);  // the data alone is more
  EXPECT_THAT(run.output, HasSubstr("strata-fmnist: done after 2 epochs, peak RSS "));
}

// --pretrain on classes 0-4, then --finetune on all ten: the sparse fine-tune and the full one in
// one table, the sparse one needing less memory beyond the weights.
TEST(FmnistExampleTest, PretrainThenFinetuneComparesSparseWithFull) {
  const fs::path data = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(data / "t10k-labels-idx1-ubyte.gz")) {
    GTEST_SKIP() << data << " not installed (launch/setup installs dataset-fashion-mnist)";
  }
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("strata_fmnist_pretrain_", getpid());
  fs::remove_all(dir);
  const std::vector<std::string> small = {"--epochs", "1", "--limit-train", "256",
                                          "--limit-test", "128", "--warmup", "1", "--threads", "1"};
  std::vector<std::string> pretrain = small;
  pretrain.insert(pretrain.end(), {"--pretrain", dir.string()});
  const Result pre = RunBinary(STRATA_FMNIST_BINARY, pretrain);
  ASSERT_EQ(pre.exit_code, 0) << pre.output;
  EXPECT_THAT(pre.output, HasSubstr("(classes 0,1,2,3,4)"));
  ASSERT_TRUE(fs::exists(dir / "weights.safetensors"));
  std::vector<std::string> finetune = small;
  finetune.insert(finetune.end(), {"--finetune", dir.string()});
  const Result fine = RunBinary(STRATA_FMNIST_BINARY, finetune);
  fs::remove_all(dir);
  ASSERT_EQ(fine.exit_code, 0) << fine.output;
  EXPECT_THAT(fine.output, HasSubstr("sparse update: 18 of 50 tensors trained"));
  EXPECT_THAT(fine.output, HasSubstr("BatchNorms normalize with their running statistics"));
  EXPECT_THAT(fine.output, HasSubstr("| sparse | "));
  EXPECT_THAT(fine.output, HasSubstr("| full | "));
  const size_t at = fine.output.find("memory beyond the weights ");
  ASSERT_NE(at, std::string::npos) << fine.output;
  const double ratio = std::stod(fine.output.substr(at + 26));
  EXPECT_GT(ratio, 0.0);
  EXPECT_LT(ratio, 0.2) << fine.output;  // the issue's goal: 1/5 of full fine-tuning's
  // Bad combinations and inputs are named.
  ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--pretrain", "a", "--finetune", "b"}), 2,
                   "--pretrain and --finetune are two runs");
  ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--finetune", "/nonexistent-pretrain",
                                                    "--limit-train", "256", "--warmup", "1"}),
                   1, "/nonexistent-pretrain/weights.safetensors");
  ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--classes", "3,12"}), 2,
                   "--classes = 12: is not a label 0-9");
  ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--classes", "3,x"}), 2,
                   "--classes 3,x: \"x\" is not a label");
}

// --finetune with --sparse-budget adds a third fine-tune, chosen by the analysis, within the
// budget (a small batch: the analysis compiles and trains 30 units).
TEST(FmnistExampleTest, FinetuneWithASparseBudgetAddsABudgetRow) {
  const fs::path data = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(data / "t10k-labels-idx1-ubyte.gz")) {
    GTEST_SKIP() << data << " not installed (launch/setup installs dataset-fashion-mnist)";
  }
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("strata_fmnist_budget_", getpid());
  fs::remove_all(dir);
  const std::vector<std::string> small = {"--epochs", "1", "--limit-train", "64", "--limit-test",
                                          "32", "--batch", "16", "--warmup", "1", "--threads", "1"};
  std::vector<std::string> pretrain = small;
  pretrain.insert(pretrain.end(), {"--pretrain", dir.string()});
  const Result pre = RunBinary(STRATA_FMNIST_BINARY, pretrain);
  ASSERT_EQ(pre.exit_code, 0) << pre.output;
  std::vector<std::string> finetune = small;
  finetune.insert(finetune.end(), {"--finetune", dir.string(), "--sparse-budget", "30M",
                                   "--sparse-budget-batches", "1"});
  const Result budget = RunBinary(STRATA_FMNIST_BINARY, finetune);
  EXPECT_EQ(budget.exit_code, 0) << budget.output;
  // 8 bias units, 8 blocks at ratio 1, and at 0.25 and 0.5 the 7 blocks with more than one
  // input channel (not the stem's convolution of the one-channel image).
  EXPECT_THAT(budget.output, HasSubstr("sparse budget 30M: measuring 30 units, 1 steps each"));
  EXPECT_THAT(budget.output, HasSubstr("blocks.1 channels:0.5"));
  // Scored on images held out of the training set (--limit-test of them), not the test images.
  EXPECT_THAT(budget.output,
              HasSubstr("on 32 validation images held out of the training set"));
  EXPECT_THAT(budget.output, HasSubstr("classifier full"));
  EXPECT_THAT(budget.output, HasSubstr("sparse budget analysis: "));
  // The choice is printed before the budget fine-tune starts.
  EXPECT_LT(budget.output.find("sparse budget 30.0 MiB: chose "),
            budget.output.find("strata-fmnist (budget): "));
  const size_t row = budget.output.find("| budget | ");
  ASSERT_NE(row, std::string::npos) << budget.output;
  // | budget | accuracy | planned device MiB | ...
  const size_t cell = budget.output.find(" | ", row + 10);
  EXPECT_LE(std::stod(budget.output.substr(cell + 3)), 30.0) << budget.output;
  EXPECT_THAT(budget.output, HasSubstr("| sparse | "));
  EXPECT_THAT(budget.output, HasSubstr("| full | "));
  EXPECT_THAT(budget.output, HasSubstr("budget / full: memory beyond the weights "));
  ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--sparse-budget", "30M"}), 2,
                   "--sparse-budget 30M chooses what a --finetune DIR run trains");
  ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--finetune", dir.string(), "--sparse-budget",
                                                    "30M", "--sparse-update", "s.json"}),
                   2, "--sparse-update s.json and --sparse-budget 30M both choose what trains");
  ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--sparse-budget", "lots"}), 2,
                   "--sparse-budget expects a size, got 'lots'");
  fs::remove_all(dir);
}

TEST(FmnistExampleTest, NumericFlagsOutsideTheirRangeAreUsageErrors) {
  for (const std::vector<std::string>& c : std::vector<std::vector<std::string>>{
           {"--batch", "0"}, {"--epochs", "0"}, {"--lr", "-1"}, {"--clip", "nan"},
           {"--limit-train", "-5"}, {"--log-every", "0"}, {"--threads", "-1"},
           {"--init-images", "-1"}, {"--weight-decay", "-2"}}) {
    SCOPED_TRACE(absl::StrJoin(c, " "));
    ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, c), 2,
                     absl::StrCat(c[0], " ", c[1], " is outside its range"));
  }
  ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--data", "/nonexistent-fmnist"}), 1,
                   "/nonexistent-fmnist/train-images-idx3-ubyte.gz");
  // Flags that contradict each other or the data are usage errors too (checked once the data
  // say how many images there are).
  if (fs::exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
    ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--optimizer", "lbfgs"}), 2,
                     "--optimizer = lbfgs: expected sgd or adamw");
    ExpectCleanError(RunBinary(STRATA_FMNIST_BINARY, {"--limit-train", "100", "--batch", "64",
                                                      "--epochs", "1", "--warmup", "5"}),
                     2, "--warmup = 5: must be less than the run's 1 steps");
  }
}

// The custom-model example learns three interleaved spirals, which no linear model separates:
// its held-out loss ends far below chance (ln 3).
TEST(CustomModelExampleTest, LearnsTheSpirals) {
  const Result run = RunBinary(STRATA_CUSTOM_MODEL_BINARY, {});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const size_t at = run.output.find("held-out loss ");
  ASSERT_NE(at, std::string::npos) << run.output;
  const double held_out = std::stod(run.output.substr(at + 14));
  EXPECT_LT(held_out, 0.3 * std::log(3.0)) << run.output;
}

}  // namespace
}  // namespace strata::examples
