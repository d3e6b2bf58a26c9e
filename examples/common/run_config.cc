#include "examples/common/run_config.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "examples/common/flags.h"

namespace strata::examples {
namespace {

constexpr char kPrefix[] = "run.";

}  // namespace

void RunConfig::Add(std::string field, std::string value, OnChange on_change) {
  fields_.push_back({std::move(field), std::move(value), on_change});
}

void RunConfig::AddWithUnrecorded(std::string field, std::string value, std::string unrecorded,
                                  OnChange on_change) {
  fields_.push_back({std::move(field), std::move(value), on_change, std::move(unrecorded)});
}

void RunConfig::Add(std::string field, int64_t value, OnChange on_change) {
  Add(std::move(field), absl::StrCat(value), on_change);
}

void RunConfig::Add(std::string field, double value, OnChange on_change) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.17g", value);
  Add(std::move(field), std::string(text), on_change);
}

void RunConfig::Record(std::map<std::string, std::string>& extra) const {
  for (const Field& f : fields_) extra[kPrefix + f.name] = f.value;
}

absl::StatusOr<std::vector<std::string>> RunConfig::Check(
    const std::map<std::string, std::string>& saved, const std::string& checkpoint) const {
  std::vector<std::string> changes;
  for (const Field& f : fields_) {
    const auto it = saved.find(kPrefix + f.name);
    // A field added since the checkpoint was written is read as what runs did before it.
    const std::string* recorded = it != saved.end()          ? &it->second
                                  : f.unrecorded.has_value() ? &*f.unrecorded
                                                             : nullptr;
    if (recorded == nullptr && f.on_change == kAnnounce) {  // free to change, so free to be new
      changes.push_back(absl::StrCat(f.name, " is not recorded by the checkpoint's run; this run has ",
                                     f.value));
      continue;
    }
    if (recorded == nullptr) {
      if (f.on_change == kInform) continue;  // written before strata recorded it
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", checkpoint, " records no ", f.name,
          " of the run that wrote it (written by an older strata?), so it cannot be checked "
          "against this run; start a new run"));
    }
    if (*recorded == f.value) continue;
    if (f.on_change == kRefuse) {
      return UsageError(absl::StrCat("--resume ", checkpoint, ": the checkpoint's run has ",
                                     f.name, " ", *recorded, ", this run has ", f.name, " ",
                                     f.value, "; resuming would compute a different run"));
    }
    changes.push_back(absl::StrCat(f.name, " changes from ", *recorded, " (the checkpoint's run) to ",
                                   f.value,
                                   f.on_change == kInform ? " (it does not change the math)" : ""));
  }
  return changes;
}

}  // namespace strata::examples
