// One JSON object per line per step (DESIGN.md, "Conventions"): the file is opened once, each
// line is flushed as it is written, so a crashed run keeps every finished step.
//
//   STRATA_ASSIGN_OR_RETURN(MetricsFile m, MetricsFile::Open(path));   // "" = disabled
//   m.Write({{"step", 1}, {"loss", 5.53}});
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace strata::examples {

class MetricsFile {
 public:
  static absl::StatusOr<MetricsFile> Open(const std::string& path);
  // Does nothing when no path was given.
  absl::Status Write(const nlohmann::json& record);

 private:
  std::string path_;
  std::shared_ptr<FILE> file_;
};

}  // namespace strata::examples
