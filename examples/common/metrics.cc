#include "examples/common/metrics.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace strata::examples {

absl::StatusOr<MetricsFile> MetricsFile::Open(const std::string& path) {
  MetricsFile m;
  m.path_ = path;
  if (path.empty()) return m;
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics: cannot open ", path, ": ", std::strerror(errno)));
  }
  m.file_.reset(f, [](FILE* p) { std::fclose(p); });
  return m;
}

absl::Status MetricsFile::Write(const nlohmann::json& record) {
  if (!file_) return absl::OkStatus();
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() ||
      std::fflush(file_.get()) != 0) {
    return absl::InternalError(absl::StrCat("writing ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace strata::examples
