#include "examples/common/offload_flags.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "offload/io_options.h"
#include "runtime/status.h"

namespace strata::examples {

absl::StatusOr<MemoryTier> ParsePlacement(absl::string_view flag, absl::string_view text) {
  if (text == "none") return MemoryTier::kDevice;
  if (text == "host") return MemoryTier::kHost;
  if (text == "nvme") return MemoryTier::kNvme;
  return UsageError(absl::StrCat("--", flag, " ", text, ": expected none, host or nvme"));
}

absl::string_view PlacementName(MemoryTier tier) {
  return tier == MemoryTier::kDevice ? "none" : MemoryTierName(tier);
}

void OffloadFlags::Register(Flags& flags) {
  const char* placement = " (none: device memory, host: host RAM, nvme: files under --nvme-dir)";
  flags.Add("offload-params", &params, absl::StrCat("where parameters live: none|host|nvme", placement));
  flags.Add("offload-grads", &grads, "where gradients live: none|host|nvme");
  flags.Add("offload-optimizer", &optimizer,
            "where optimizer state (AdamW moments, SGD momentum) lives: none|host|nvme");
  flags.Add("offload-activations", &activations,
            "with --recompute: where the block inputs it keeps wait for the backward: "
            "none|host|nvme");
  flags.Add("nvme-dir", &nvme_dir,
            "directory for the swap file of states placed on nvme (required with nvme, refused "
            "without)");
  flags.AddBytes("device-budget", &device_budget, {.zero = "no budget"},
                 "device memory the step must fit in");
  flags.AddBytes("host-budget", &host_budget, {.zero = "no budget"},
                 "host RAM for offloaded states and staging");
  flags.AddBytes("prefetch-bytes", &prefetch_bytes, {.zero = "fetch one value ahead only"},
                 "bytes of fetches issued ahead of the node that needs them");
  flags.Add("offload-persistence-threshold", &persistence_threshold, {.min = 0, .max = kMaxCount},
            "parameters of fewer elements (biases, norms) stay in device memory with their "
            "gradients and optimizer state, whatever --offload-* says; 0: offload every one");
  flags.Add("io-engine", &io_engine, "NVMe engine: auto (io_uring, else threads)|uring|threads");
  flags.Add("io-direct", &io_direct, "O_DIRECT for the swap file: auto (where allowed)|on|off");
  flags.AddBytes("io-block-size", &io_block_size,
                 {.min = offload::kIoBlockAlignment, .max = int64_t{1} << 30},
                 "bytes per NVMe request, a multiple of 4K");
  flags.Add("io-queue-depth", &io_queue_depth, {.min = 1, .max = 4096}, "NVMe requests in flight");
}

absl::StatusOr<graph::OffloadOptions> OffloadFlags::Resolve(const Flags& flags) const {
  graph::OffloadOptions o;
  STRATA_ASSIGN_OR_RETURN(o.params, ParsePlacement("offload-params", params));
  STRATA_ASSIGN_OR_RETURN(o.grads, ParsePlacement("offload-grads", grads));
  STRATA_ASSIGN_OR_RETURN(o.optimizer, ParsePlacement("offload-optimizer", optimizer));
  STRATA_ASSIGN_OR_RETURN(o.activations, ParsePlacement("offload-activations", activations));
  if (o.activations != MemoryTier::kDevice && !flags.given("recompute")) {
    return UsageError(absl::StrCat("--offload-activations ", activations,
                                   " places the block inputs that --recompute keeps; it needs "
                                   "--recompute"));
  }
  o.device_bytes = device_budget;
  o.host_bytes = host_budget;
  o.prefetch_bytes = prefetch_bytes;
  o.persistence_threshold = persistence_threshold;

  std::vector<std::string> on_nvme;
  for (const auto& [flag, tier] : {std::pair{"--offload-params", o.params},
                                   {"--offload-grads", o.grads},
                                   {"--offload-optimizer", o.optimizer},
                                   {"--offload-activations", o.activations}}) {
    if (tier == MemoryTier::kNvme) on_nvme.push_back(flag);
  }
  if (!on_nvme.empty() && nvme_dir.empty()) {
    return UsageError(absl::StrCat(on_nvme[0], " nvme needs --nvme-dir DIR (where the swap file goes)"));
  }
  if (on_nvme.empty() && flags.given("nvme-dir")) {
    return UsageError(absl::StrCat("--nvme-dir ", nvme_dir, " is given but no state is placed on "
                                   "nvme (--offload-params, --offload-grads or "
                                   "--offload-optimizer nvme)"));
  }
  for (const char* io_flag : {"io-engine", "io-direct", "io-block-size", "io-queue-depth"}) {
    if (on_nvme.empty() && flags.given(io_flag)) {
      return UsageError(absl::StrCat("--", io_flag, " configures the NVMe engine, but no state is "
                                     "placed on nvme (--offload-params, --offload-grads or "
                                     "--offload-optimizer nvme)"));
    }
  }
  o.io.dir = nvme_dir;
  absl::StatusOr<offload::IoEngineKind> engine = offload::ParseIoEngineKind(io_engine);
  if (!engine.ok()) {
    return UsageError(absl::StrCat("--io-engine ", io_engine, ": expected auto, uring or threads"));
  }
  o.io.engine = *engine;
  absl::StatusOr<offload::DirectIo> direct = offload::ParseDirectIo(io_direct);
  if (!direct.ok()) {
    return UsageError(absl::StrCat("--io-direct ", io_direct, ": expected auto, on or off"));
  }
  o.io.direct = *direct;
  if (io_block_size % offload::kIoBlockAlignment != 0) {
    return UsageError(absl::StrCat("--io-block-size ", io_block_size, " is not a multiple of ",
                                   offload::kIoBlockAlignment, " (O_DIRECT's alignment)"));
  }
  o.io.block_size = io_block_size;
  o.io.queue_depth = static_cast<int>(io_queue_depth);
  // The ranges above are the engine's own; anything it still refuses names the flag's field.
  if (absl::Status s = o.io.Validate(); !s.ok()) return UsageError(s.message());
  return o;
}

void RecordOffload(const graph::OffloadOptions& o, RunConfig& config) {
  config.Add("--offload-params", std::string(PlacementName(o.params)), RunConfig::kInform);
  config.Add("--offload-grads", std::string(PlacementName(o.grads)), RunConfig::kInform);
  config.Add("--offload-activations", std::string(PlacementName(o.activations)), RunConfig::kInform);
  config.Add("--offload-optimizer", std::string(PlacementName(o.optimizer)), RunConfig::kInform);
  config.Add("--device-budget", o.device_bytes, RunConfig::kInform);
  config.Add("--host-budget", o.host_bytes, RunConfig::kInform);
  config.Add("--prefetch-bytes", o.prefetch_bytes, RunConfig::kInform);
  config.Add("--offload-persistence-threshold", o.persistence_threshold, RunConfig::kInform);
}

std::string OffloadSummary(const graph::OffloadOptions& o) {
  if (!o.offloads()) return "";
  auto budget = [](int64_t bytes) { return bytes == 0 ? std::string("none") : BytesText(bytes); };
  std::string s = absl::StrCat(
      "offload: params ", PlacementName(o.params), ", grads ", PlacementName(o.grads),
      o.StagesGradsOnHost() ? " (the final ones staged on the host for the NVMe updates)" : "",
      ", optimizer ", PlacementName(o.optimizer),
      o.activations == MemoryTier::kDevice
          ? ""
          : absl::StrCat(", activations ", PlacementName(o.activations)),
      "; budgets: device ", budget(o.device_bytes),
      ", host ", budget(o.host_bytes), "; prefetch ", BytesText(o.prefetch_bytes),
      o.persistence_threshold > 0
          ? absl::StrCat("; parameters under ", o.persistence_threshold,
                         " elements stay on the device")
          : "",
      "\n");
  if (o.uses_nvme()) {
    absl::StrAppend(&s, "io engine: ", offload::IoEngineKindName(o.io.engine), ", direct ",
                    offload::DirectIoName(o.io.direct), ", block ", BytesText(o.io.block_size),
                    ", queue depth ", o.io.queue_depth, ", swap file in ", o.io.dir, "\n");
  }
  return s;
}

}  // namespace strata::examples
