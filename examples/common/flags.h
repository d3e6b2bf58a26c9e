// Command-line flags for the example programs: `--name value` or `--name=value`, booleans as a
// bare `--name`; unknown flags and unparsable values are errors that name the flag.
//
//   Flags flags("strata-gpt", "trains a GPT on a text or token file");
//   int64_t steps = 100;
//   flags.Add("steps", &steps, "optimizer steps");
//   if (std::optional<int> code = flags.ParseOrExitCode(argc, argv)) return *code;  // error, --help
//   ...
//   return flags.ExitCode(Train(options));     // prints "strata-gpt: <message>" on error
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"

namespace strata::examples {

class Flags {
 public:
  Flags(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  void Add(std::string name, int64_t* value, std::string help);
  void Add(std::string name, double* value, std::string help);
  void Add(std::string name, std::string* value, std::string help);
  void Add(std::string name, bool* value, std::string help);

  absl::Status Parse(int argc, char** argv);
  // Parse for main(): on a bad flag prints the error and gives 2, on --help prints the help and
  // gives 0; nothing when the program should run.
  std::optional<int> ParseOrExitCode(int argc, char** argv);
  // The process exit code for the program's result: 0, or 1 after printing "<program>: <error>".
  int ExitCode(const absl::Status& result) const;
  bool help_requested() const { return help_; }
  // Whether the flag was given on the command line.
  bool given(const std::string& name) const;
  std::string Help() const;

 private:
  struct Flag {
    std::string name, help, default_text;
    std::variant<int64_t*, double*, std::string*, bool*> value;
    bool given = false;
  };
  absl::Status Set(Flag& f, const std::string& text);

  std::string program_, summary_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

}  // namespace strata::examples
