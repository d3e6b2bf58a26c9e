// Fuzz target: the example programs' flag parser on arbitrary argument vectors (the input split
// at NUL bytes), with a flag of every kind and range.
#include <string>
#include <vector>

#include "examples/common/flags.h"
#include "tests/fuzz/fuzz_target.h"

namespace strata::fuzz {

std::vector<std::string> FuzzSeeds() {
  using namespace std::string_literals;
  return {"--steps\0" "12\0--lr=3e-4\0--name\0x\0--shuffle\0--clip\0" "0"s,
          "--steps=-1\0--help\0--lr\0nan\0--shuffle=maybe"s, "--unknown\0positional\0--steps"s,
          "--budget\0" "1.5GiB\0--block=64K\0--budget\0-1\0--block\0" "0.3K"s};
}

}  // namespace strata::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata::examples;
  std::vector<std::string> args = {"fuzz"};
  std::string arg;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(arg);
      arg.clear();
    } else {
      arg.push_back(static_cast<char>(data[i]));
    }
  }
  args.push_back(arg);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());

  int64_t steps = 100, threads = 0, budget = 0, block = 4096;
  double lr = 1e-3, clip = 1, beta = 0.9;
  std::string name;
  bool shuffle = false;
  Flags f("fuzz", "flag parser fuzz target");
  f.Add("steps", &steps, {.min = 1, .max = kMaxCount}, "steps");
  f.Add("threads", &threads, {.min = 0, .max = 4096, .zero = "all cores"}, "threads");
  f.Add("lr", &lr, {.min = 0, .max = 10}, "learning rate");
  f.Add("clip", &clip, {.min = 0, .max = 1e9, .zero = "off"}, "clip");
  f.Add("beta", &beta, {.min = 0, .max = 1, .max_open = true}, "beta");
  f.Add("name", &name, "a string");
  f.Add("shuffle", &shuffle, "a boolean");
  f.AddBytes("budget", &budget, {.zero = "none"}, "a size");
  f.AddBytes("block", &block, {.min = 4096, .max = int64_t{1} << 30}, "a bounded size");
  const absl::Status s = f.Parse(static_cast<int>(argv.size()), argv.data());
  // Every value that was accepted lies in its range; every error is a usage error.
  if (s.ok() && (steps < 1 || threads < 0 || threads > 4096 || !(lr >= 0 && lr <= 10) ||
                 !(clip >= 0 && clip <= 1e9) || !(beta >= 0 && beta < 1) || budget < 0 ||
                 budget > kMaxBytes || block < 4096 || block > (int64_t{1} << 30))) {
    std::abort();
  }
  if (!s.ok() && !IsUsageError(s)) std::abort();
  (void)f.Help();
  return 0;
}
