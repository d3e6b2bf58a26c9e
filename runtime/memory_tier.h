// The memory tiers that a model state can live in (see DESIGN.md, "Execution model").
//
//   MemoryTier t = MemoryTier::kHost;
//   MemoryTierName(t) == "host"
#pragma once

#include <array>
#include <cstdint>
#include "absl/strings/string_view.h"

namespace strata {

enum class MemoryTier : uint8_t {
  kDevice,  // accelerator memory; on a CPU-only build, the compute arena in RAM
  kHost,    // (pinned) host RAM used for staging and offloaded state
  kNvme,    // bytes in swap files under a user-given directory
};

inline constexpr int kNumMemoryTiers = 3;
inline constexpr std::array<MemoryTier, kNumMemoryTiers> kAllMemoryTiers = {
    MemoryTier::kDevice, MemoryTier::kHost, MemoryTier::kNvme};

inline absl::string_view MemoryTierName(MemoryTier tier) {
  switch (tier) {
    case MemoryTier::kDevice: return "device";
    case MemoryTier::kHost: return "host";
    case MemoryTier::kNvme: return "nvme";
  }
  return "unknown";
}

}  // namespace strata
