// What the example programs report of a step and of the run, the same way in each: the metrics
// fields of memory and IO, the progress line's IO part, and the process's peak resident set.
//
//   nlohmann::json record = {{"step", st.step}, {"loss", st.loss}};
//   AddStepMemory(st, record);   // peak_bytes {device, host, nvme}, io_wait_ms, io_read_bytes, ...
//   std::printf("... | %.1f ms%s\n", st.step_ms, IoWaitText(st, options.offload).c_str());
//   record["peak_rss_bytes"] = PeakRssBytes();          // on the run's last line
#pragma once

#include <cstdint>
#include <string>

#include "graph/offload_options.h"
#include "graph/program.h"
#include "nlohmann/json.hpp"

namespace strata::examples {

// Adds to `record`: "peak_bytes" {"device", "host", "nvme"} (measured, per tier), "io_wait_ms"
// (time compute waited for IO), "io_read_bytes" and "io_write_bytes" (sums over the tiers). All
// are always present, 0 when nothing is offloaded, so that every metrics file has one schema.
void AddStepMemory(const graph::StepStats& stats, nlohmann::json& record);

// " | io wait 12.3 ms" for the progress line when `offload` moves any state; "" otherwise.
std::string IoWaitText(const graph::StepStats& stats, const graph::OffloadOptions& offload);

// The process's peak resident set so far, in bytes (getrusage's ru_maxrss), or -1 where the
// system does not say.
int64_t PeakRssBytes();

// "1234.5 MiB" for the final summary.
std::string MebibytesText(int64_t bytes);

}  // namespace strata::examples
