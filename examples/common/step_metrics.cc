#include "examples/common/step_metrics.h"

#include <sys/resource.h>

#include "absl/strings/str_format.h"

namespace strata::examples {

void AddStepMemory(const graph::StepStats& s, nlohmann::json& record) {
  nlohmann::json peak = nlohmann::json::object();
  int64_t read = 0, written = 0;
  for (MemoryTier t : kAllMemoryTiers) {
    const int i = static_cast<int>(t);
    peak[std::string(MemoryTierName(t))] = s.peak_bytes[i];
    read += s.io_read_bytes[i];
    written += s.io_write_bytes[i];
  }
  record["peak_bytes"] = std::move(peak);
  record["io_wait_ms"] = s.io_wait_ms;
  record["io_read_bytes"] = read;
  record["io_write_bytes"] = written;
}

std::string IoWaitText(const graph::StepStats& s, const graph::OffloadOptions& offload) {
  if (!offload.offloads()) return "";
  return absl::StrFormat(" | io wait %.1f ms", s.io_wait_ms);
}

int64_t PeakRssBytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string MebibytesText(int64_t bytes) {
  if (bytes < 0) return "unknown";
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

}  // namespace strata::examples
