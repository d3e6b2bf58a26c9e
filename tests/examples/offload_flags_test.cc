// The offload flags of the example programs (examples/common/offload_flags.h), the size syntax
// they use (ParseBytes in examples/common/flags.h), and how a resume treats a changed placement
// (RunConfig::kInform), without running a program.
#include "examples/common/offload_flags.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "examples/common/flags.h"
#include "examples/common/run_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::examples {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kKi = 1024, kMi = kKi * 1024, kGi = kMi * 1024, kTi = kGi * 1024;

TEST(ParseBytesTest, AcceptsNumbersWithBinaryUnits) {
  const std::vector<std::pair<const char*, int64_t>> cases = {
      {"0", 0},
      {"123456", 123456},
      {"64K", 64 * kKi},
      {"64k", 64 * kKi},
      {"512M", 512 * kMi},
      {"512MiB", 512 * kMi},
      {"512MB", 512 * kMi},
      {"4G", 4 * kGi},
      {"4gib", 4 * kGi},
      {"1.5G", 3 * kGi / 2},
      {"0.5K", 512},
      {"1.25M", 5 * kMi / 4},
      {"2T", 2 * kTi},
      {"100B", 100},
      {"007", 7},
      {"9223372036854775807", INT64_MAX},
      {"8388607T", 8388607 * kTi},  // the largest whole number of T in int64
      {"8388607.5T", 8388607 * kTi + kTi / 2},
  };
  for (const auto& [text, bytes] : cases) {
    SCOPED_TRACE(text);
    const absl::StatusOr<int64_t> v = ParseBytes(text);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, bytes);
  }
}

TEST(ParseBytesTest, RefusesMalformedSizesSayingWhy) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"", "cannot be empty"},
      {"-1", "cannot be negative"},
      {"-4G", "cannot be negative"},
      {"G", "starts with a digit"},
      {".5G", "starts with a digit"},
      {"1.G", "needs digits after it"},
      {"12X", "unknown unit 'X'"},
      {"4GG", "unknown unit 'GG'"},
      {"4Gi", "unknown unit 'Gi'"},
      {"4 G", "unknown unit ' G'"},
      {"5iB", "unknown unit 'iB'"},
      {"1e9", "unknown unit 'e9'"},
      {"0.3K", "whole number of bytes"},  // 307.2 bytes
      {"1.5", "whole number of bytes"},
  };
  for (const auto& [text, why] : cases) {
    SCOPED_TRACE(text);
    const absl::StatusOr<int64_t> v = ParseBytes(text);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(v.status().message(), HasSubstr(why));
  }
}

TEST(ParseBytesTest, SizesPastInt64AreOutOfRange) {
  for (const char* text : {"9223372036854775808", "8388608T", "99999999999999999999999",
                           "8589934592G", "8796093022208M"}) {  // 2^63 bytes
    SCOPED_TRACE(text);
    const absl::StatusOr<int64_t> v = ParseBytes(text);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kOutOfRange);
    EXPECT_THAT(v.status().message(), HasSubstr("2^63 - 1"));
  }
}

TEST(ParseBytesTest, BytesTextIsExactAndParsesBack) {
  EXPECT_EQ(BytesText(0), "0");
  EXPECT_EQ(BytesText(512 * kMi), "512M");
  EXPECT_EQ(BytesText(1536), "1536");  // 1.5K: no whole unit above bytes
  EXPECT_EQ(BytesText(3 * kKi), "3K");
  EXPECT_EQ(BytesText(1025), "1025");
  EXPECT_EQ(BytesText(int64_t{1} << 50), "1024T");
  for (int64_t v : {int64_t{0}, int64_t{1}, 4095 * kKi, 3 * kGi, 7 * kTi, int64_t{123456789}}) {
    EXPECT_EQ(ParseBytes(BytesText(v)).value(), v) << v;
  }
}

// Parses `args` (flags only) with the offload flags registered, and resolves them.
absl::StatusOr<graph::OffloadOptions> Resolve(std::vector<std::string> args) {
  Flags flags("test", "offload flags");
  OffloadFlags offload;
  offload.Register(flags);
  args.insert(args.begin(), "test");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  if (absl::Status s = flags.Parse(static_cast<int>(argv.size()), argv.data()); !s.ok()) return s;
  return offload.Resolve(flags);
}

TEST(OffloadFlagsTest, DefaultsKeepEverythingOnTheDevice) {
  const graph::OffloadOptions o = Resolve({}).value();
  EXPECT_FALSE(o.offloads());
  EXPECT_EQ(o.params, MemoryTier::kDevice);
  EXPECT_EQ(o.device_bytes, 0);
  EXPECT_EQ(o.host_bytes, 0);
  EXPECT_EQ(o.prefetch_bytes, graph::OffloadOptions{}.prefetch_bytes);
  EXPECT_EQ(o.persistence_threshold, 100000);
  EXPECT_EQ(OffloadSummary(o), "");
}

TEST(OffloadFlagsTest, EveryFlagReachesTheOptions) {
  const graph::OffloadOptions o =
      Resolve({"--offload-params", "nvme", "--offload-grads=host", "--offload-optimizer", "nvme",
               "--nvme-dir", "/mnt/x", "--device-budget", "512M", "--host-budget", "1.5G",
               "--prefetch-bytes", "64K", "--io-engine", "threads", "--io-direct", "on",
               "--io-block-size", "256KiB", "--io-queue-depth", "8",
               "--offload-persistence-threshold", "5000"})
          .value();
  EXPECT_EQ(o.params, MemoryTier::kNvme);
  EXPECT_EQ(o.grads, MemoryTier::kHost);
  EXPECT_EQ(o.optimizer, MemoryTier::kNvme);
  EXPECT_EQ(o.io.dir, "/mnt/x");
  EXPECT_EQ(o.device_bytes, 512 * kMi);
  EXPECT_EQ(o.host_bytes, 3 * kGi / 2);
  EXPECT_EQ(o.prefetch_bytes, 64 * kKi);
  EXPECT_EQ(o.io.engine, offload::IoEngineKind::kThreads);
  EXPECT_EQ(o.io.direct, offload::DirectIo::kOn);
  EXPECT_EQ(o.io.block_size, 256 * kKi);
  EXPECT_EQ(o.io.queue_depth, 8);
  EXPECT_EQ(o.persistence_threshold, 5000);
  EXPECT_EQ(OffloadSummary(o),
            "offload: params nvme, grads host, optimizer nvme; budgets: device 512M, host 1536M; "
            "prefetch 64K; parameters under 5000 elements stay on the device\nio engine: threads, "
            "direct on, block 256K, queue depth 8, swap file in /mnt/x\n");
  graph::OffloadOptions every = o;
  every.persistence_threshold = 0;
  EXPECT_THAT(OffloadSummary(every), ::testing::Not(HasSubstr("stay on the device")));
}

TEST(OffloadFlagsTest, HostOnlyNeedsNoDirectoryAndPrintsNoEngine) {
  const graph::OffloadOptions o = Resolve({"--offload-optimizer", "host"}).value();
  EXPECT_EQ(o.optimizer, MemoryTier::kHost);
  EXPECT_FALSE(o.uses_nvme());
  EXPECT_THAT(OffloadSummary(o), HasSubstr("optimizer host; budgets: device none, host none"));
  EXPECT_THAT(OffloadSummary(o), ::testing::Not(HasSubstr("io engine")));
}

// Note [exit codes]: each is a usage error whose message names the flag.
TEST(OffloadFlagsTest, BadCombinationsAreUsageErrorsNamingTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--offload-params", "disk"}, "--offload-params disk: expected none, host or nvme"},
      {{"--offload-grads", "device"}, "--offload-grads device: expected none, host or nvme"},
      {{"--device-budget", "12X"}, "--device-budget expects a size, got '12X': unknown unit 'X'"},
      {{"--host-budget", "-1G"}, "--host-budget expects a size, got '-1G': a size cannot be negative"},
      {{"--prefetch-bytes", "0.1K"}, "--prefetch-bytes expects a size, got '0.1K'"},
      {{"--offload-persistence-threshold", "-1"}, "--offload-persistence-threshold"},
      {{"--host-budget", "99999999999T"}, "--host-budget 99999999999T is outside its range [0, 1024T]"},
      {{"--device-budget", "2000T"}, "--device-budget 2000T is outside its range [0, 1024T]"},
      {{"--offload-params", "nvme"}, "--offload-params nvme needs --nvme-dir DIR"},
      {{"--offload-activations", "host"}, "--offload-activations host places the block inputs "
                                          "that --recompute keeps; it needs --recompute"},
      {{"--offload-activations", "disk"}, "--offload-activations disk: expected none, host or nvme"},
      {{"--offload-grads", "host", "--offload-optimizer", "nvme"},
       "--offload-optimizer nvme needs --nvme-dir DIR"},
      {{"--nvme-dir", "/tmp/x"}, "--nvme-dir /tmp/x is given but no state is placed on nvme"},
      {{"--nvme-dir", "/tmp/x", "--offload-params", "host"},
       "--nvme-dir /tmp/x is given but no state is placed on nvme"},
      {{"--io-engine", "uring"}, "--io-engine configures the NVMe engine, but no state is placed"},
      {{"--offload-params", "host", "--io-direct", "on"}, "--io-direct configures the NVMe engine"},
      {{"--io-block-size", "1M"}, "--io-block-size configures the NVMe engine"},
      {{"--io-queue-depth", "4"}, "--io-queue-depth configures the NVMe engine"},
      {{"--offload-params", "nvme", "--nvme-dir", "/d", "--io-engine", "aio"},
       "--io-engine aio: expected auto, uring or threads"},
      {{"--offload-params", "nvme", "--nvme-dir", "/d", "--io-direct", "yes"},
       "--io-direct yes: expected auto, on or off"},
      {{"--offload-params", "nvme", "--nvme-dir", "/d", "--io-block-size", "6K"},
       "--io-block-size 6144 is not a multiple of 4096"},
      {{"--offload-params", "nvme", "--nvme-dir", "/d", "--io-block-size", "1K"},
       "--io-block-size 1K is outside its range [4K, 1G]"},
      {{"--offload-params", "nvme", "--nvme-dir", "/d", "--io-queue-depth", "0"},
       "--io-queue-depth 0 is outside its range [1, 4096]"},
  };
  for (const auto& [args, message] : cases) {
    SCOPED_TRACE(::testing::PrintToString(args));
    const absl::StatusOr<graph::OffloadOptions> o = Resolve(args);
    ASSERT_FALSE(o.ok());
    EXPECT_TRUE(IsUsageError(o.status())) << o.status();
    EXPECT_THAT(o.status().message(), HasSubstr(message));
  }
}

TEST(OffloadFlagsTest, HelpShowsTheSizeSyntax) {
  Flags flags("test", "offload flags");
  OffloadFlags offload;
  offload.Register(flags);
  const std::string help = flags.Help();
  EXPECT_THAT(help, HasSubstr("--host-budget     host RAM for offloaded states and staging; size "
                              "[0, 1024T], 0: no budget (default 0)"));
  EXPECT_THAT(help, HasSubstr("(default 64M)"));
  EXPECT_THAT(help, HasSubstr("sizes are bytes with an optional binary unit: 123456, 64K, 512M, "
                              "1.5G, 4GiB"));
}

// Note [placement is not part of the run]: a checkpoint written with states in memory resumes
// with them on NVMe (and back), the change announced; a math setting still refuses.
TEST(RunConfigTest, ADifferentPlacementIsAnnouncedNotRefused) {
  auto config = [](const std::vector<std::string>& args, double lr) {
    RunConfig c;
    c.Add("--lr", lr);
    RecordOffload(Resolve(args).value(), c);
    return c;
  };
  std::map<std::string, std::string> saved;
  config({}, 1e-3).Record(saved);
  EXPECT_EQ(saved.at("run.--offload-params"), "none");
  EXPECT_EQ(saved.at("run.--prefetch-bytes"), "67108864");

  const RunConfig on_nvme = config({"--offload-params", "nvme", "--offload-optimizer", "host",
                                    "--nvme-dir", "/d", "--host-budget", "1G"},
                                   1e-3);
  const absl::StatusOr<std::vector<std::string>> changes = on_nvme.Check(saved, "ckpt");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(*changes, ::testing::ElementsAre(
                            "--offload-params changes from none (the checkpoint's run) to nvme "
                            "(it does not change the math)",
                            "--offload-optimizer changes from none (the checkpoint's run) to host "
                            "(it does not change the math)",
                            "--host-budget changes from 0 (the checkpoint's run) to 1073741824 "
                            "(it does not change the math)"));
  // And back: a run saved on NVMe resumes in memory.
  std::map<std::string, std::string> saved_nvme;
  on_nvme.Record(saved_nvme);
  EXPECT_EQ(config({}, 1e-3).Check(saved_nvme, "ckpt").value().size(), 3u);

  const absl::StatusOr<std::vector<std::string>> other_lr =
      config({"--offload-params", "host"}, 2e-3).Check(saved, "ckpt");
  EXPECT_TRUE(IsUsageError(other_lr.status()));
  EXPECT_THAT(other_lr.status().message(), HasSubstr("the checkpoint's run has --lr 0.001"));
}

// A checkpoint written before strata recorded placement still resumes; one missing a math
// setting does not.
TEST(RunConfigTest, InformationalFieldsMayBeMissingFromTheCheckpoint) {
  RunConfig c;
  c.Add("--lr", 1e-3);
  RecordOffload(Resolve({"--offload-params", "host"}).value(), c);
  const std::map<std::string, std::string> old = {{"run.--lr", "0.001"}};
  const absl::StatusOr<std::vector<std::string>> changes = c.Check(old, "ckpt");
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->empty());
  const absl::StatusOr<std::vector<std::string>> none = c.Check({}, "ckpt");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(), HasSubstr("records no --lr"));
}

}  // namespace
}  // namespace strata::examples
