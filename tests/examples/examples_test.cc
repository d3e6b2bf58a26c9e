// strata-gpt (and the custom-model example) end to end: the binary is run as a user would run it, on a small text file, and its
// metrics file, checkpoints and error messages are checked.
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace strata::examples {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

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
    EXPECT_EQ(m[i].contains("val_loss"), (i + 1) % 10 == 0) << "step " << i + 1;
  }
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
TEST_F(StrataGptTest, CheckPlanGivesBitwiseTheSameLosses) {
  const Result planned = RunStrataGpt(With(Tiny(3), {"--metrics", Path("planned.jsonl")}));
  ASSERT_EQ(planned.exit_code, 0) << planned.output;
  const Result checked =
      RunStrataGpt(With(Tiny(3), {"--check-plan", "--metrics", Path("checked.jsonl")}));
  ASSERT_EQ(checked.exit_code, 0) << checked.output;
  const std::vector<nlohmann::json> a = ReadMetrics(Path("planned.jsonl"));
  const std::vector<nlohmann::json> b = ReadMetrics(Path("checked.jsonl"));
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].at("loss").get<double>(), b[i].at("loss").get<double>()) << "step " << i + 1;
    EXPECT_LT(b[i].at("peak_bytes").at("device").get<int64_t>(),
              a[i].at("peak_bytes").at("device").get<int64_t>());
  }
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

TEST_F(StrataGptTest, ResumeRefusesARunThatWouldReadOtherBatches) {
  ASSERT_EQ(RunStrataGpt(With(Tiny(3), {"--save", Path("ckpt")})).exit_code, 0);
  std::vector<std::string> args = With(Tiny(4), {"--resume", Path("ckpt")});
  args[11] = "2";  // --batch 2 instead of 4
  const Result run = RunStrataGpt(args);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("batch=4"));
  EXPECT_THAT(run.output, HasSubstr("batch=2"));
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
  std::vector<std::string> args = Tiny(2);
  args[1] = Path("tokens.bin");
  const Result run = RunStrataGpt(With(args, {"--vocab", "256"}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("token id 300"));
  EXPECT_THAT(run.output, HasSubstr("tokens.bin"));
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
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("pass --heads"));

  std::ofstream(Path("gpt2/config.json")) << R"({"model_type": "gpt2", "n_head": 4})";
  run = RunStrataGpt(args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("vocab 256, 2 layers, width 64, 4 heads"));
  EXPECT_THAT(run.output, HasSubstr("loaded weights from"));

  run = RunStrataGpt(With(args, {"--heads", "2"}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("--heads 2 differs from n_head 4"));
}

TEST_F(StrataGptTest, BadFlagsAndFilesAreNamed) {
  Result run = RunStrataGpt({"--data", Path("nope.txt")});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("nope.txt"));

  run = RunStrataGpt(With(Tiny(2), {"--schedule", "linear"}));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("linear"));

  run = RunStrataGpt(With(Tiny(2), {"--steps-typo", "3"}));
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("--steps-typo"));

  run = RunStrataGpt(With(Tiny(3), {"--warmup", "5"}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("--warmup 5 must be below --steps 3"));

  std::vector<std::string> args = Tiny(2);
  args[7] = "3";  // --heads 3 does not divide --width 32
  run = RunStrataGpt(args);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("heads"));
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
