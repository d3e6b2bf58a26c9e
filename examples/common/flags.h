// Command-line flags for the example programs: `--name value` or `--name=value`, booleans as a
// bare `--name`; unknown flags, unparsable values and numbers outside their declared range are
// errors that name the flag.
//
//   Flags flags("strata-gpt", "trains a GPT on a text or token file");
//   int64_t steps = 100, threads = 0;
//   flags.Add("steps", &steps, {.min = 1, .max = kMaxCount}, "optimizer steps");
//   flags.Add("threads", &threads, {.min = 0, .max = 4096, .zero = "all cores"}, "threads");
//   int64_t budget = 0;
//   flags.AddBytes("host-budget", &budget, {.zero = "no budget"}, "host RAM budget");  // 4G, 512M
//   std::vector<std::string> groups;
//   flags.AddRepeated("param-group", &groups, "PATTERN:lr_scale=X");  // each use appends one
//   if (std::optional<int> code = flags.ParseOrExitCode(argc, argv)) return *code;  // error, --help
//   if (bad_combination) return flags.ExitCode(UsageError("--a 1 contradicts --b 2"));
//   return flags.ExitCode(Train(options));     // prints "strata-gpt: <message>" on error
//
// Note [exit codes]: a program ends with
//   0  success (and --help);
//   2  a usage error: the command line itself is wrong — an unknown flag, a value that does not
//      parse or lies outside its range, a missing required flag, flags that contradict each
//      other, or a flag that contradicts a file it names (--init-from, --resume). The remedy is
//      to change the command line. Such errors are made with UsageError(), and only those;
//   1  a run-time error: a file that is missing or malformed, IO, a numerical failure.
// An error is one line on stderr, "<program>: <message>", and never a stack trace.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace strata::examples {

// A generous bound for counts (steps, intervals, examples): large enough for any run, small
// enough that products of two of them never overflow int64.
inline constexpr int64_t kMaxCount = int64_t{1} << 40;
inline constexpr int64_t kMaxSeed = std::numeric_limits<int64_t>::max();

// The values an integer flag accepts, both ends included. `zero`, when set, says what 0 means
// (printed by --help as "0: <zero>").
struct IntRange {
  int64_t min = 0, max = kMaxCount;
  const char* zero = nullptr;
};
// The values a size flag accepts, in bytes, both ends included (Flags::AddBytes). The default
// bound, 1024T (2^50), is past any memory or disk a run can have.
inline constexpr int64_t kMaxBytes = int64_t{1} << 50;
struct ByteRange {
  int64_t min = 0, max = kMaxBytes;
  const char* zero = nullptr;
};

// A size as a user writes one: a non-negative decimal number, whole or with a fraction, and an
// optional binary unit K, M, G or T (powers of 1024, either case), optionally followed by "iB"
// or "B": "123456", "64K", "512M", "1.5G", "4GiB", "2tb". A fraction must come to whole bytes
// ("1.5K" is 1536, "0.3K" is refused). Errors say what is wrong with the text (the caller names
// the flag); a size past int64 is OutOfRange.
absl::StatusOr<int64_t> ParseBytes(absl::string_view text);
// The size in the largest unit that keeps it exact: 536870912 -> "512M", 1536 -> "1536".
std::string BytesText(int64_t bytes);
// The values a real flag accepts; an open end excludes itself ([0, 1) for Adam's betas). NaN
// and infinities are outside every range.
struct RealRange {
  double min = 0, max = 0;
  bool min_open = false, max_open = false;
  const char* zero = nullptr;
};

// A usage error (Note [exit codes]): InvalidArgument, marked so that Flags::ExitCode gives 2.
absl::Status UsageError(absl::string_view message);
bool IsUsageError(const absl::Status& status);

class Flags {
 public:
  Flags(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  void Add(std::string name, int64_t* value, IntRange range, std::string help);
  void Add(std::string name, double* value, RealRange range, std::string help);
  void Add(std::string name, std::string* value, std::string help);
  void Add(std::string name, bool* value, std::string help);
  // A size in bytes written with an optional unit (ParseBytes); --help shows the syntax.
  void AddBytes(std::string name, int64_t* value, ByteRange range, std::string help);
  // A flag that may be given any number of times: each use appends its value, in order.
  void AddRepeated(std::string name, std::vector<std::string>* values, std::string help);

  // Errors are usage errors naming the flag (and the value and range where one is wrong).
  absl::Status Parse(int argc, char** argv);
  // Parse for main(): on a bad flag prints the error and gives 2, on --help prints the help and
  // gives 0; nothing when the program should run.
  std::optional<int> ParseOrExitCode(int argc, char** argv);
  // The process exit code for the program's result (Note [exit codes]): 0, or 2 for a usage
  // error and 1 for any other after printing "<program>: <error>" on stderr.
  int ExitCode(const absl::Status& result) const;
  bool help_requested() const { return help_; }
  // Whether the flag was given on the command line.
  bool given(const std::string& name) const;
  std::string Help() const;

 private:
  struct Flag {
    std::string name, help, default_text, range_text;
    std::variant<int64_t*, double*, std::string*, bool*, std::vector<std::string>*> value;
    bool bytes = false;  // an int64_t* written as a size (AddBytes)
    IntRange int_range;
    RealRange real_range;
    bool given = false;
  };
  absl::Status Set(Flag& f, const std::string& text);

  std::string program_, summary_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

}  // namespace strata::examples
