// Where a compiled step keeps its model states, and the budgets it must fit (DESIGN.md,
// "Execution model"). Part of TrainOptions.
//
//   TrainOptions o;
//   o.offload.params = MemoryTier::kNvme;        // home tier of every parameter
//   o.offload.grads = MemoryTier::kHost;         // of every final gradient / accumulator
//   o.offload.optimizer = MemoryTier::kNvme;     // of AdamW's moments, SGD's momentum
//   o.offload.activations = MemoryTier::kHost;   // with o.recompute: the block inputs it keeps
//   o.offload.device_bytes = 512 << 20;          // the compute tier must fit in this
//   o.offload.host_bytes = 1 << 30;              // pinned host RAM: homes plus staging
//   o.offload.io.dir = "/mnt/nvme/strata";       // swap file directory (nvme homes need one)
//   o.offload.prefetch_bytes = 64 << 20;         // fetches issued ahead of their first use
//   o.offload.persistence_threshold = 100000;    // smaller parameters stay on the device
//
// With every class on kDevice (the default) nothing is offloaded and no IO engine is opened.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "offload/io_options.h"
#include "runtime/memory_tier.h"

namespace strata::graph {

struct OffloadOptions {
  MemoryTier params = MemoryTier::kDevice;
  MemoryTier grads = MemoryTier::kDevice;
  MemoryTier optimizer = MemoryTier::kDevice;
  // With TrainOptions::recompute: where the block inputs that recompute keeps for the backward
  // wait (written there in the forward, fetched back in the backward), as ZeRO-Infinity offloads
  // activation checkpoints.
  MemoryTier activations = MemoryTier::kDevice;
  int64_t device_bytes = 0;  // 0: no budget
  int64_t host_bytes = 0;    // 0: no budget
  // How many bytes of fetches may be in flight or waiting ahead of the node that needs them,
  // beyond the next one (0: fetch only one value ahead).
  int64_t prefetch_bytes = int64_t{64} << 20;
  // Parameters of fewer elements stay on the device with their gradients and optimizer state
  // (Note [home tiers] in passes/place_state.cc), as ZeroOptions::persistence_threshold keeps
  // them whole; 0 offloads every one.
  int64_t persistence_threshold = 100000;
  offload::IoOptions io;  // the NVMe engine: directory, engine, O_DIRECT, block size, depth

  bool Persists(int64_t numel) const { return numel < persistence_threshold; }
  // Whether the final gradients of offloaded updates wait on the host though `grads` is the
  // device (Note [home tiers] in passes/place_state.cc): when parameters and optimizer state are
  // on NVMe, and no host budget bounds the host.
  bool StagesGradsOnHost() const {
    return grads == MemoryTier::kDevice && params == MemoryTier::kNvme &&
           optimizer == MemoryTier::kNvme && host_bytes == 0;
  }
  bool offloads() const {
    return params != MemoryTier::kDevice || grads != MemoryTier::kDevice ||
           optimizer != MemoryTier::kDevice || activations != MemoryTier::kDevice;
  }
  bool uses_nvme() const {
    return params == MemoryTier::kNvme || grads == MemoryTier::kNvme ||
           optimizer == MemoryTier::kNvme || activations == MemoryTier::kNvme;
  }
};

}  // namespace strata::graph
