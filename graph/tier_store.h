// The homes of a Program's persistent values off the device (Note [home tiers]): a region of
// pinned host memory, extents in the NVMe engine's swap file, and the pinned staging buffers
// that every transfer between NVMe and memory goes through. It moves bytes, chunk by chunk:
//
//   STRATA_ASSIGN_OR_RETURN(auto store, TierStore::Create(offload, &ledger, host_bytes));
//   STRATA_ASSIGN_OR_RETURN(offload::Extent e, store->AllocateExtent(bytes));
//   STRATA_RETURN_IF_ERROR(store->Write(e, src, bytes));   // memory -> NVMe, via staging
//   STRATA_RETURN_IF_ERROR(store->Read(e, dst, bytes));    // NVMe -> memory, via staging
//
// An update returns with its last writes to NVMe still in flight (from staging buffers only), so
// that the next update's reads overlap them; every later transfer waits for them before it
// reuses a staging buffer or touches the swap file, so they are never observed half done.
//
// Read, Write and Update may be called from several threads; they take turns with the staging
// buffers. Update runs an elementwise function over operands that live in different tiers, pipelined:
// while chunk i is computed in host buffers, chunk i+1 is read and chunk i-1 written back
// (Note [the pipelined update] in tier_store.cc). Every byte is accounted: the host region and
// the staging buffers on the ledger's host tier, the extents on its NVMe tier.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "graph/ir.h"
#include "graph/offload_options.h"
#include "graph/passes/passes.h"
#include "offload/nvme_engine.h"
#include "runtime/allocator.h"
#include "runtime/memory_ledger.h"

namespace strata::graph {

class TierStore {
 public:
  // Staging buffers: three chunks of up to four operands, for the pipelined update.
  static constexpr int kStagingSlots = 12;
  static int64_t ChunkBytes(const OffloadOptions& o) { return 4 * o.io.block_size; }
  static int64_t StagingBytes(const OffloadOptions& o) { return kStagingSlots * ChunkBytes(o); }
  // Whether a planned program's transfers need the staging buffers: NVMe homes, or updates over
  // state off the device.
  static bool NeedsStaging(const Graph& graph, const MemoryPlan& plan);

  // `host_bytes`: the region for values homed on the host; `staging`: whether transfers need
  // staging buffers (NVMe homes, or updates over state off the device). Opens the NVMe engine
  // when options place anything on NVMe.
  static absl::StatusOr<std::unique_ptr<TierStore>> Create(const OffloadOptions& options,
                                                           MemoryLedger* ledger,
                                                           int64_t host_bytes, bool staging);
  ~TierStore();  // waits for the writes still in flight

  void* host_region() const { return host_region_.data(); }
  const Allocation& staging_buffers() const { return staging_; }

  // How bytes move between the store's host memory and memory that may be a GPU's (the fetched
  // copies and the device-tier operands of updates): Copy may return before they have moved,
  // Wait returns once every copy so far has. Program gives one on a CUDA device (a copy queue);
  // without one, memcpy. Set before the first transfer; `copies` outlives the store's use.
  class DeviceCopies {
   public:
    virtual ~DeviceCopies() = default;
    virtual absl::Status Copy(void* dst, const void* src, int64_t bytes) = 0;
    virtual absl::Status Wait() = 0;
  };
  void set_device_copies(DeviceCopies* copies) { device_copies_ = copies; }
  absl::StatusOr<offload::Extent> AllocateExtent(int64_t bytes);

  // bytes from an extent into memory, and back; any length (the tail block is padded).
  absl::Status Read(const offload::Extent& extent, void* dst, int64_t bytes);
  absl::Status Write(const offload::Extent& extent, const void* src, int64_t bytes);

  // One operand of Update: where its elements live and whether the function writes them.
  struct Operand {
    MemoryTier tier = MemoryTier::kDevice;  // kDevice: copied in and out (a DMA on a GPU)
    float* data = nullptr;                  // kDevice (maybe a GPU's) and kHost
    offload::Extent extent;                 // kNvme
    bool mutated = false;
    // Where the updated chunks are also copied (a fetched copy, maybe on a GPU), or null.
    float* copy_to = nullptr;
    // With run > 0 (kDevice and kHost only): the operand's elements are runs of `run` every
    // `stride` of `data` (and of `copy_to`), the trained channels of a partial-channel parameter;
    // each chunk gathers them into a staging buffer and scatters them back.
    int64_t run = 0, stride = 0;
  };
  // fn(chunk pointers, one per operand, in host memory; elements in this chunk).
  using ChunkFn = std::function<absl::Status(absl::Span<float* const>, int64_t)>;
  absl::Status Update(absl::Span<const Operand> operands, int64_t numel, const ChunkFn& fn);

  // Through device_copies_ where there is one, else memcpy.
  absl::Status CopyMemory(void* dst, const void* src, int64_t bytes);
  absl::Status WaitCopies();

  // Bytes moved by IO per tier (reads out of a tier, writes into it), since creation.
  int64_t read_bytes(MemoryTier t) const { return read_[static_cast<int>(t)].load(); }
  int64_t write_bytes(MemoryTier t) const { return write_[static_cast<int>(t)].load(); }
  void CountRead(MemoryTier t, int64_t n) { read_[static_cast<int>(t)] += n; }
  void CountWrite(MemoryTier t, int64_t n) { write_[static_cast<int>(t)] += n; }
  // "io_uring, O_DIRECT, ..." or "no NVMe".
  std::string Describe() const;

 private:
  class Tickets;  // tickets in flight, one per staging slot
  TierStore() = default;
  char* slot(int i) const { return static_cast<char*>(staging_.data()) + i * chunk_bytes_; }

  int64_t chunk_bytes_ = 0;
  std::unique_ptr<Allocator> pinned_;
  Allocation host_region_, staging_;
  std::unique_ptr<offload::NvmeEngine> engine_;
  DeviceCopies* device_copies_ = nullptr;
  // One set of staging buffers: a transfer from the IO stream and one from the communication
  // stream (a stage-3 gather's shard read) take turns.
  std::mutex staging_mutex_;
  // The writes an update left in flight (with staging_mutex_ held; null without NVMe).
  std::unique_ptr<Tickets> pending_writes_;
  std::array<std::atomic<int64_t>, kNumMemoryTiers> read_{}, write_{};
};

}  // namespace strata::graph
