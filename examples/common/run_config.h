// What a checkpoint records of the run that wrote it — every setting that changes the math — so
// that a resume that would compute another run is refused by name rather than continued.
//
//   RunConfig config;
//   config.Add("--layers", layers);
//   config.Add("--lr", lr);
//   config.Add("--steps", steps, RunConfig::kAnnounce);   // may change: announced, not refused
//   config.Add("--offload-params", "nvme", RunConfig::kInform);  // for the record only
//   config.Record(state.extra);                           // saved as "run.--layers" = "6", ...
//   ...
//   STRATA_ASSIGN_OR_RETURN(std::vector<std::string> changes, config.Check(saved.extra, dir));
//
// Values are compared as text: integers in decimal, reals with 17 significant digits (exact).
// A checkpoint that records no run configuration (written before strata recorded one) is
// refused: nothing says it belongs to this run.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::examples {

class RunConfig {
 public:
  // kRefuse: a resume must agree. kAnnounce: a change is announced. kInform: recorded for
  // people reading the checkpoint, not part of the math (Note [placement is not part of the run]
  // in offload_flags.h): a change is announced and a checkpoint without the field is accepted.
  enum OnChange { kRefuse, kAnnounce, kInform };

  void Add(std::string field, std::string value, OnChange on_change = kRefuse);
  void Add(std::string field, int64_t value, OnChange on_change = kRefuse);
  void Add(std::string field, double value, OnChange on_change = kRefuse);
  // A field added after checkpoints were written without it: such a checkpoint is taken to
  // record `unrecorded` (what every run did before the field existed), then checked as
  // `on_change` says, so that old checkpoints of runs that did not use it still resume.
  void AddWithUnrecorded(std::string field, std::string value, std::string unrecorded,
                         OnChange on_change = kRefuse);

  // Writes every field into a checkpoint's trainer-state strings as "run.<field>".
  void Record(std::map<std::string, std::string>& extra) const;

  // Compares `saved` (a checkpoint's trainer-state strings) with this run, field by field. A
  // kRefuse field that differs is a usage error naming the field and both values; a kAnnounce
  // or kInform field that differs gives one line in the result, as does a kAnnounce field the
  // checkpoint does not record (added since it was written); a kInform field it does not record
  // is passed over. A checkpoint without a kRefuse field: FailedPrecondition.
  absl::StatusOr<std::vector<std::string>> Check(const std::map<std::string, std::string>& saved,
                                                 const std::string& checkpoint) const;

 private:
  struct Field {
    std::string name, value;
    OnChange on_change;
    std::optional<std::string> unrecorded;  // AddWithUnrecorded
  };
  std::vector<Field> fields_;
};

}  // namespace strata::examples
