// strata-bench-nvme run as launch/bench-nvme runs it, on a small file: its JSON line says what it
// did (bytes, requests, engine, direct), and bad flags are usage errors naming the flag.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/offload/offload_test_util.h"

namespace strata::offload {
namespace {

struct Result {
  int exit_code = -1;
  std::string out;  // stdout, then stderr
};

Result RunBench(const std::string& args) {
  Result r;
  FILE* pipe = popen(absl::StrCat(STRATA_BENCH_NVME_BINARY, " ", args, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) r.out.append(buffer, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(BenchNvmeTest, PrintsOneJsonLineOfWhatItDid) {
  testing::TempDir dir;
  for (const char* engine : {"uring", "threads"}) {
    for (const char* rw : {"read", "write"}) {
      const Result r = RunBench(
          absl::StrCat("--dir ", dir.path(), " --file-size 6M --block-size 1M ",
                       "--queue-depth 4 --io-direct off --io-engine ", engine, " --rw ", rw));
      ASSERT_EQ(r.exit_code, 0) << r.out;
      const nlohmann::json j = nlohmann::json::parse(r.out);
      EXPECT_EQ(j["rw"], rw);
      EXPECT_EQ(j["engine"], engine);
      EXPECT_EQ(j["direct"], false);
      EXPECT_EQ(j["bytes"], 6 << 20);
      EXPECT_EQ(j["requests"], 6) << "the timed pass only";
      EXPECT_EQ(j["queue_depth"], 4);
      EXPECT_GT(j["bytes_per_s"].get<double>(), 0);
    }
  }
  EXPECT_EQ(dir.Entries(), 0);
}

TEST(BenchNvmeTest, BadFlagsAreUsageErrors) {
  testing::TempDir dir;
  const std::string base = absl::StrCat("--dir ", dir.path(), " --rw read ");
  struct Case {
    std::string args, message;
  } cases[] = {
      {base + "--file-size 1X", "--file-size '1X' is not a positive size in bytes"},
      {base + "--block-size 1000", "block_size = 1000 must be a positive multiple of 4096"},
      {base + "--file-size 5000", "--file-size 5000 is not a multiple of 4096"},
      {"--rw read", "--dir is required"},
      {absl::StrCat("--dir ", dir.path(), " --rw scan"), "--rw 'scan' is not one of read, write"},
      {base + "--io-engine aio", "--io-engine: io engine 'aio' is not one of"},
  };
  for (const Case& c : cases) {
    const Result r = RunBench(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << ": " << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << ": " << r.out;
  }
  const Result missing = RunBench("--dir /nonexistent/strata --rw read --file-size 4M");
  EXPECT_EQ(missing.exit_code, 1) << missing.out;
  EXPECT_NE(missing.out.find("io dir '/nonexistent/strata'"), std::string::npos) << missing.out;
}

}  // namespace
}  // namespace strata::offload
