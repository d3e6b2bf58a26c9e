// The offload flags of the example programs (strata-gpt, strata-fmnist), one definition for
// both: where each class of model state lives, the budgets, and the NVMe engine's settings
// (graph/offload_options.h).
//
//   OffloadFlags offload;
//   offload.Register(flags);                  // --offload-params, --nvme-dir, --io-engine, ...
//   if (std::optional<int> code = flags.ParseOrExitCode(argc, argv)) return *code;
//   absl::StatusOr<graph::OffloadOptions> o = offload.Resolve(flags);  // usage errors name the flag
//   if (!o.ok()) return flags.ExitCode(o.status());
//   train_options.offload = *o;
//   RecordOffload(*o, run_config);            // informational: a resume may change placement
//   std::printf("%s", OffloadSummary(*o).c_str());   // "" when nothing is offloaded
//
// Note [placement is not part of the run]: the same compiled program with another placement
// computes bit-identical results (DESIGN.md, "Execution model") and a checkpoint holds values,
// not tiers, so a run saved with states on NVMe may resume with them in memory and back. The
// run configuration records the placement for people reading the checkpoint, and a resume
// announces a change instead of refusing it (RunConfig::kInform).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "examples/common/flags.h"
#include "examples/common/run_config.h"
#include "graph/offload_options.h"
#include "runtime/memory_tier.h"

namespace strata::examples {

struct OffloadFlags {
  // none | host | nvme; none keeps the class in device memory (MemoryTier::kDevice).
  std::string params = "none", grads = "none", optimizer = "none", activations = "none";
  std::string nvme_dir;
  int64_t device_budget = graph::OffloadOptions{}.device_bytes;
  int64_t host_budget = graph::OffloadOptions{}.host_bytes;
  int64_t prefetch_bytes = graph::OffloadOptions{}.prefetch_bytes;
  int64_t persistence_threshold = graph::OffloadOptions{}.persistence_threshold;
  std::string io_engine = "auto", io_direct = "auto";
  int64_t io_block_size = offload::IoOptions{}.block_size;
  int64_t io_queue_depth = offload::IoOptions{}.queue_depth;

  // Adds the flags above to `flags`; they keep pointers into this object.
  void Register(Flags& flags);
  // The options the flags ask for. Usage errors (Note [exit codes] in flags.h) name the flag: a
  // placement other than none|host|nvme, an nvme placement without --nvme-dir, --nvme-dir or an
  // --io-* flag without any nvme placement, an engine, direct mode or block size that is not
  // one of the accepted ones. `flags` tells which flags were given.
  absl::StatusOr<graph::OffloadOptions> Resolve(const Flags& flags) const;
};

// "none" -> kDevice, "host" -> kHost, "nvme" -> kNvme; anything else is a usage error naming
// `flag`.
absl::StatusOr<MemoryTier> ParsePlacement(absl::string_view flag, absl::string_view text);
// The flag's word for a tier: kDevice -> "none".
absl::string_view PlacementName(MemoryTier tier);

// Records placement, budgets and prefetch in `config` as informational fields (Note [placement
// is not part of the run]).
void RecordOffload(const graph::OffloadOptions& options, RunConfig& config);

// What is offloaded where, the budgets, and with NVMe the IO engine's settings, one line each;
// "" when every class stays in device memory.
std::string OffloadSummary(const graph::OffloadOptions& options);

}  // namespace strata::examples
