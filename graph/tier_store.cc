#include "graph/tier_store.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "graph/op.h"
#include "offload/pinned_allocator.h"
#include "runtime/status.h"

namespace strata::graph {

bool TierStore::NeedsStaging(const Graph& graph, const MemoryPlan& plan) {
  if (plan.nvme_bytes > 0) return true;
  for (const Node& n : graph.nodes()) {
    if (n.op->kind() == OpKind::kOffloadedUpdate) return true;
  }
  return false;
}
namespace {

int64_t RoundUp(int64_t n) {
  return (n + offload::kIoBlockAlignment - 1) / offload::kIoBlockAlignment *
         offload::kIoBlockAlignment;
}

// Copies elements [at, at + n) of a strided operand (runs of `run` every `stride` from `base`) into
// `buffer` (`gather`) or back out of it, run by run through `copy` (dst, src, bytes).
template <typename CopyFn>
absl::Status CopyRuns(float* base, int64_t run, int64_t stride, int64_t at, int64_t n,
                      float* buffer, bool gather, const CopyFn& copy) {
  for (int64_t i = at; i < at + n;) {
    const int64_t j = i % run, len = std::min(run - j, at + n - i);
    float* p = base + (i / run) * stride + j;
    const int64_t bytes = len * static_cast<int64_t>(sizeof(float));
    STRATA_RETURN_IF_ERROR(gather ? copy(buffer + (i - at), p, bytes)
                                  : copy(p, buffer + (i - at), bytes));
    i += len;
  }
  return absl::OkStatus();
}

absl::Status HostCopy(void* dst, const void* src, int64_t bytes) {
  std::memcpy(dst, src, static_cast<size_t>(bytes));
  return absl::OkStatus();
}

}  // namespace

// Tickets in flight; on an error the rest are still waited for, since they target our buffers.
class TierStore::Tickets {
 public:
  explicit Tickets(offload::NvmeEngine* engine) : engine_(engine) {}
  ~Tickets() { (void)WaitAll(); }
  // `file_offset`: where in the swap file the extent it reads or writes starts.
  void Add(int slot, offload::IoTicket t, int64_t file_offset = -1) {
    tickets_[slot] = t;
    pending_[slot] = true;
    file_offset_[slot] = file_offset;
  }
  // Waits for the tickets on the extent that starts at `file_offset`.
  absl::Status WaitFor(int64_t file_offset) {
    absl::Status first;
    for (int i = 0; i < TierStore::kStagingSlots; ++i) {
      if (pending_[i] && file_offset_[i] == file_offset) first.Update(Wait(i));
    }
    return first;
  }
  absl::Status Wait(int slot) {
    if (!pending_[slot]) return absl::OkStatus();
    pending_[slot] = false;
    return engine_->Wait(tickets_[slot]);
  }
  absl::Status WaitAll() {
    absl::Status first;
    for (int i = 0; i < TierStore::kStagingSlots; ++i) first.Update(Wait(i));
    return first;
  }

 private:
  offload::NvmeEngine* engine_;
  std::array<offload::IoTicket, TierStore::kStagingSlots> tickets_{};
  std::array<bool, TierStore::kStagingSlots> pending_{};
  std::array<int64_t, TierStore::kStagingSlots> file_offset_{};
};

TierStore::~TierStore() {
  if (pending_writes_ != nullptr) (void)pending_writes_->WaitAll();
}

absl::StatusOr<std::unique_ptr<TierStore>> TierStore::Create(const OffloadOptions& options,
                                                             MemoryLedger* ledger,
                                                             int64_t host_bytes, bool staging) {
  std::unique_ptr<TierStore> s(new TierStore());
  s->chunk_bytes_ = ChunkBytes(options);
  s->pinned_ = std::make_unique<offload::PinnedHostAllocator>(0, ledger, "program host tier");
  if (host_bytes > 0) {
    STRATA_ASSIGN_OR_RETURN(s->host_region_, s->pinned_->Allocate(host_bytes, kIoAlignment));
    std::memset(s->host_region_.data(), 0, s->host_region_.size());
  }
  if (staging) {
    absl::StatusOr<Allocation> buffers = s->pinned_->Allocate(StagingBytes(options), kIoAlignment);
    // The allocator's advice is about the host budget; these bytes follow the io block size.
    if (!buffers.ok()) {
      return absl::Status(
          buffers.status().code(),
          absl::StrCat(buffers.status().message(), " (the ", StagingBytes(options),
                       " bytes are the staging buffers: ", kStagingSlots, " chunks of 4 io blocks of ",
                       options.io.block_size, " bytes; a smaller io block size needs fewer)"));
    }
    s->staging_ = *std::move(buffers);
  }
  if (options.uses_nvme()) {
    STRATA_RETURN_IF_ERROR(options.io.Validate());
    STRATA_ASSIGN_OR_RETURN(s->engine_, offload::NvmeEngine::Open(options.io, ledger));
    if (staging) {
      STRATA_RETURN_IF_ERROR(s->engine_->RegisterBuffer(s->staging_.data(), s->staging_.size()));
    }
    s->pending_writes_ = std::make_unique<Tickets>(s->engine_.get());
  }
  return s;
}

absl::Status TierStore::CopyMemory(void* dst, const void* src, int64_t bytes) {
  if (device_copies_ == nullptr) return HostCopy(dst, src, bytes);
  return device_copies_->Copy(dst, src, bytes);
}

absl::Status TierStore::WaitCopies() {
  return device_copies_ == nullptr ? absl::OkStatus() : device_copies_->Wait();
}

absl::StatusOr<offload::Extent> TierStore::AllocateExtent(int64_t bytes) {
  STRATA_CHECK(engine_ != nullptr, "an NVMe extent without an NVMe engine");
  return engine_->Allocate(RoundUp(bytes));
}

std::string TierStore::Describe() const {
  return engine_ == nullptr ? "no NVMe" : engine_->Describe();
}

absl::Status TierStore::Read(const offload::Extent& extent, void* dst, int64_t bytes) {
  std::lock_guard lock(staging_mutex_);
  if (pending_writes_ != nullptr) STRATA_RETURN_IF_ERROR(pending_writes_->WaitAll());
  Tickets t(engine_.get());
  const int64_t chunks = (bytes + chunk_bytes_ - 1) / chunk_bytes_;
  auto issue = [&](int64_t c) -> absl::Status {
    const int64_t off = c * chunk_bytes_, len = std::min(chunk_bytes_, bytes - off);
    STRATA_ASSIGN_OR_RETURN(offload::IoTicket ticket,
                            engine_->Read(extent, off, slot(c % kStagingSlots), RoundUp(len)));
    t.Add(static_cast<int>(c % kStagingSlots), ticket);
    return absl::OkStatus();
  };
  for (int64_t c = 0; c < std::min<int64_t>(chunks, kStagingSlots); ++c) {
    STRATA_RETURN_IF_ERROR(issue(c));
  }
  for (int64_t c = 0; c < chunks; ++c) {
    const int s = static_cast<int>(c % kStagingSlots);
    STRATA_RETURN_IF_ERROR(t.Wait(s));
    const int64_t off = c * chunk_bytes_, len = std::min(chunk_bytes_, bytes - off);
    // The slot is read again only once the copy out of it is done.
    STRATA_RETURN_IF_ERROR(CopyMemory(static_cast<char*>(dst) + off, slot(s), len));
    STRATA_RETURN_IF_ERROR(WaitCopies());
    if (c + kStagingSlots < chunks) STRATA_RETURN_IF_ERROR(issue(c + kStagingSlots));
  }
  CountRead(MemoryTier::kNvme, bytes);
  return absl::OkStatus();
}

absl::Status TierStore::Write(const offload::Extent& extent, const void* src, int64_t bytes) {
  std::lock_guard lock(staging_mutex_);
  if (pending_writes_ != nullptr) STRATA_RETURN_IF_ERROR(pending_writes_->WaitAll());
  Tickets t(engine_.get());
  const int64_t chunks = (bytes + chunk_bytes_ - 1) / chunk_bytes_;
  for (int64_t c = 0; c < chunks; ++c) {
    const int s = static_cast<int>(c % kStagingSlots);
    STRATA_RETURN_IF_ERROR(t.Wait(s));
    const int64_t off = c * chunk_bytes_, len = std::min(chunk_bytes_, bytes - off);
    STRATA_RETURN_IF_ERROR(CopyMemory(slot(s), static_cast<const char*>(src) + off, len));
    STRATA_RETURN_IF_ERROR(WaitCopies());
    std::memset(slot(s) + len, 0, RoundUp(len) - len);
    STRATA_ASSIGN_OR_RETURN(offload::IoTicket ticket,
                            engine_->Write(extent, off, slot(s), RoundUp(len)));
    t.Add(s, ticket);
  }
  STRATA_RETURN_IF_ERROR(t.WaitAll());
  CountWrite(MemoryTier::kNvme, bytes);
  return absl::OkStatus();
}

// Note [the pipelined update]
// An update over state off the device runs in chunks of ChunkBytes. The staging buffers hold
// three chunks of every operand: while chunk i is computed, chunk i+1 is read (from NVMe, or
// copied from the device) and chunk i-1 written back, so the engine is busy while the CPU
// computes. Host-homed operands are updated in place in their home (no copy); operands on the
// device are copied in and out (on a GPU through DeviceCopies, a copy stream: chunk i+1's copies in
// and chunk i-1's copies out run while chunk i is computed, and all are done when Update returns).
// A chunk's staging set is reused only after its writes from three chunks ago have completed. The
// last writes are left in flight when the update returns, so that the next update's reads overlap
// them; the next transfer waits for them slot by slot as it reuses the buffers, and for all of them
// first when it reads or writes the same extent (or is a plain Read or Write). Chunks start at
// multiples of ChunkBytes / 4 elements, and the update is elementwise, so the result is bitwise the
// same as one call over the whole tensor. A strided operand (the trained channels of a parameter,
// Note [partial channels offloaded] in graph/passes/schedule_offload.cc) is gathered into its
// staging buffer run by run and scattered back, so its chunk lines up with the compact operands';
// chunks need not end on a run's end. Such an operand is in memory: the O_DIRECT reads and writes
// of an NVMe home move whole aligned blocks, which runs do not fill.
absl::Status TierStore::Update(absl::Span<const Operand> operands, int64_t numel,
                               const ChunkFn& fn) {
  std::lock_guard lock(staging_mutex_);
  const int k = static_cast<int>(operands.size());
  STRATA_CHECK(k >= 1 && k <= 4, "a pipelined update over ", k, " operands (1 to 4)");
  STRATA_CHECK(staging_.size() > 0, "a pipelined update without staging buffers");
  for (const Operand& o : operands) {
    if (o.run > 0 && (o.tier == MemoryTier::kNvme || o.stride < o.run)) {
      return absl::InternalError(absl::StrCat("update: a strided operand (runs of ", o.run,
                                              " every ", o.stride, ") in ",
                                              MemoryTierName(o.tier)));
    }
  }
  Tickets reads(engine_.get());
  // Without NVMe nothing is written asynchronously; with it, the previous update's last writes may
  // still be in flight from the slots this one is about to fill (waited for per set below).
  Tickets no_engine(nullptr);
  Tickets& writes = pending_writes_ != nullptr ? *pending_writes_ : no_engine;
  const int64_t elems = chunk_bytes_ / static_cast<int64_t>(sizeof(float));
  const int64_t chunks = (numel + elems - 1) / elems;
  std::array<std::array<float*, 4>, 3> ptrs{};
  // A host-tier operand is host memory; a device-tier one and a fetched copy may be a GPU's.
  auto host_copy = [](void* dst, const void* src, int64_t bytes) {
    return HostCopy(dst, src, bytes);
  };
  auto device_copy = [this](void* dst, const void* src, int64_t bytes) {
    return CopyMemory(dst, src, bytes);
  };
  auto range = [&](int64_t c) { return std::min(elems, numel - c * elems); };
  auto stage_in = [&](int64_t c) -> absl::Status {
    const int set = static_cast<int>(c % 3);
    const int64_t off = c * elems, n = range(c), bytes = n * static_cast<int64_t>(sizeof(float));
    for (int j = 0; j < k; ++j) {
      const Operand& o = operands[j];
      float* staged = reinterpret_cast<float*>(slot(set * 4 + j));
      if (o.run > 0) {
        STRATA_RETURN_IF_ERROR(
            o.tier == MemoryTier::kHost
                ? CopyRuns(o.data, o.run, o.stride, off, n, staged, /*gather=*/true, host_copy)
                : CopyRuns(o.data, o.run, o.stride, off, n, staged, /*gather=*/true, device_copy));
        ptrs[set][j] = staged;
        CountRead(o.tier, bytes);
        continue;
      }
      switch (o.tier) {
        case MemoryTier::kHost:
          ptrs[set][j] = o.data + off;
          CountRead(MemoryTier::kHost, bytes);
          break;
        case MemoryTier::kDevice:
          STRATA_RETURN_IF_ERROR(CopyMemory(staged, o.data + off, bytes));
          ptrs[set][j] = staged;
          CountRead(MemoryTier::kDevice, bytes);
          break;
        case MemoryTier::kNvme: {
          // An earlier update's writes still in flight to this extent land first.
          STRATA_RETURN_IF_ERROR(writes.WaitFor(o.extent.offset));
          STRATA_ASSIGN_OR_RETURN(offload::IoTicket t,
                                  engine_->Read(o.extent, off * static_cast<int64_t>(sizeof(float)),
                                                staged, RoundUp(bytes)));
          reads.Add(set * 4 + j, t);
          ptrs[set][j] = staged;
          CountRead(MemoryTier::kNvme, bytes);
          break;
        }
      }
    }
    return absl::OkStatus();
  };
  auto stage_out = [&](int64_t c) -> absl::Status {
    const int set = static_cast<int>(c % 3);
    const int64_t off = c * elems, n = range(c), bytes = n * static_cast<int64_t>(sizeof(float));
    for (int j = 0; j < k; ++j) {
      const Operand& o = operands[j];
      if (o.copy_to != nullptr && o.run > 0) {
        STRATA_RETURN_IF_ERROR(CopyRuns(o.copy_to, o.run, o.stride, off, n, ptrs[set][j],
                                        /*gather=*/false, device_copy));
      } else if (o.copy_to != nullptr) {
        STRATA_RETURN_IF_ERROR(CopyMemory(o.copy_to + off, ptrs[set][j], bytes));
      }
      if (!o.mutated) continue;
      CountWrite(o.tier, bytes);
      if (o.run > 0) {
        STRATA_RETURN_IF_ERROR(o.tier == MemoryTier::kHost
                                   ? CopyRuns(o.data, o.run, o.stride, off, n, ptrs[set][j],
                                              /*gather=*/false, host_copy)
                                   : CopyRuns(o.data, o.run, o.stride, off, n, ptrs[set][j],
                                              /*gather=*/false, device_copy));
      } else if (o.tier == MemoryTier::kDevice) {
        STRATA_RETURN_IF_ERROR(CopyMemory(o.data + off, ptrs[set][j], bytes));
      } else if (o.tier == MemoryTier::kNvme) {
        char* staged = reinterpret_cast<char*>(ptrs[set][j]);
        std::memset(staged + bytes, 0, RoundUp(bytes) - bytes);
        STRATA_ASSIGN_OR_RETURN(
            offload::IoTicket t,
            engine_->Write(o.extent, off * static_cast<int64_t>(sizeof(float)), staged,
                           RoundUp(bytes)));
        writes.Add(set * 4 + j, t, o.extent.offset);
      }
    }
    return absl::OkStatus();
  };
  for (int j = 0; j < 4; ++j) STRATA_RETURN_IF_ERROR(writes.Wait(j));  // set 0
  if (chunks > 0) STRATA_RETURN_IF_ERROR(stage_in(0));
  for (int64_t c = 0; c < chunks; ++c) {
    // Chunk c's copies in, and chunk c - 1's copies out, are done; chunk c + 1's overlap fn.
    STRATA_RETURN_IF_ERROR(WaitCopies());
    if (c + 1 < chunks) {
      const int next = static_cast<int>((c + 1) % 3);
      for (int j = 0; j < k; ++j) STRATA_RETURN_IF_ERROR(writes.Wait(next * 4 + j));
      STRATA_RETURN_IF_ERROR(stage_in(c + 1));
    }
    const int set = static_cast<int>(c % 3);
    for (int j = 0; j < k; ++j) STRATA_RETURN_IF_ERROR(reads.Wait(set * 4 + j));
    STRATA_RETURN_IF_ERROR(fn(absl::MakeConstSpan(ptrs[set].data(), k), range(c)));
    STRATA_RETURN_IF_ERROR(stage_out(c));
  }
  // The copies out land before the update returns; the last NVMe writes finish behind the next
  // transfer.
  return WaitCopies();
}

}  // namespace strata::graph
