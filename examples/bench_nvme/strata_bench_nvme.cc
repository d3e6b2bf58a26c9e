// strata-bench-nvme: sequential reads or writes through the NVMe engine, as fio would do them,
// printing one JSON line. launch/bench-nvme runs it against fio.
//
//   strata-bench-nvme --dir /mnt/nvme --file-size 1G --block-size 1M --queue-depth 32 --rw read
//   {"rw":"read","bytes_per_s":2.1e9,"engine":"uring","direct":true,...}
//
// The file (the engine's swap file, one extent) is covered in block-size requests from start to
// end with queue-depth of them in flight (and as many more queued in the engine: Note [tickets
// queued ahead]), each request into its own slot of a registered pinned buffer; with --seconds it
// wraps around until that much time has passed. Reads first write the whole file (not timed), so
// that they read data from the device, not unwritten extents.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "examples/common/flags.h"
#include "offload/nvme_engine.h"
#include "offload/pinned_allocator.h"
#include "runtime/status.h"

namespace strata::examples {
namespace {

using offload::Extent;
using offload::IoOptions;
using offload::IoTicket;
using offload::NvmeEngine;

// "4096", "4K", "4KiB", "1M", "1G": powers of 1024.
absl::StatusOr<int64_t> ParseBytes(const std::string& flag, const std::string& text) {
  std::string number = text, unit;
  while (!number.empty() && std::isalpha(static_cast<unsigned char>(number.back()))) {
    unit.insert(unit.begin(), number.back());
    number.pop_back();
  }
  unit = absl::AsciiStrToUpper(unit);
  int shift = -1;
  // Each unit with its power of two.
  static constexpr std::pair<const char*, int> kUnits[] = {
      {"", 0}, {"B", 0}, {"K", 10}, {"KIB", 10}, {"M", 20},
      {"MIB", 20}, {"G", 30}, {"GIB", 30}, {"T", 40}, {"TIB", 40}};
  for (const auto& [name, s] : kUnits) {
    if (unit == name) shift = s;
  }
  int64_t value = 0;
  if (shift < 0 || !absl::SimpleAtoi(number, &value) || value <= 0 ||
      value > (int64_t{1} << (62 - shift))) {
    return UsageError(absl::StrCat("--", flag, " '", text,
                                   "' is not a positive size in bytes (units K, M, G, T: 1024^n)"));
  }
  return value << shift;
}

// Note [tickets queued ahead]
// The bench keeps twice the queue depth of tickets issued, as a schedule that prefetches ahead
// does: the engine still has at most queue-depth requests in flight, and its completion thread
// hands the next queued block to the kernel as soon as one completes, without waiting for this
// thread to wake up (on a busy machine that wake-up can take longer than the IO in flight).
constexpr int64_t kSlotsPerRequestInFlight = 2;

struct Run {
  std::string rw;
  int64_t file_size = 0, block_size = 0, queue_depth = 0;
  double seconds = 0;
};

// Covers the extent sequentially, queue_depth requests in flight, until one pass is done or
// `seconds` have passed; returns the bytes moved and the seconds taken.
absl::Status Sweep(NvmeEngine& engine, const Extent& extent, char* slots, const Run& run,
                   bool write, double seconds, int64_t* bytes_moved, double* elapsed) {
  const auto start = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<IoTicket> flight(static_cast<size_t>(kSlotsPerRequestInFlight * run.queue_depth), 0);
  int64_t offset = 0, moved = 0;
  for (int64_t i = 0;; ++i) {
    if (seconds > 0 ? since() >= seconds : i * run.block_size >= run.file_size) break;
    const size_t k = static_cast<size_t>(i % static_cast<int64_t>(flight.size()));
    if (flight[k] != 0) STRATA_RETURN_IF_ERROR(engine.Wait(flight[k]));
    if (offset >= run.file_size) offset = 0;
    const int64_t bytes = std::min(run.block_size, run.file_size - offset);
    char* slot = slots + static_cast<int64_t>(k) * run.block_size;
    STRATA_ASSIGN_OR_RETURN(flight[k], write ? engine.Write(extent, offset, slot, bytes)
                                             : engine.Read(extent, offset, slot, bytes));
    offset += bytes;
    moved += bytes;
  }
  for (IoTicket t : flight) {
    if (t != 0) STRATA_RETURN_IF_ERROR(engine.Wait(t));
  }
  *elapsed = since();
  *bytes_moved = moved;
  return absl::OkStatus();
}

absl::Status Bench(const IoOptions& io, const Run& run) {
  MemoryLedger ledger;
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<NvmeEngine> engine, NvmeEngine::Open(io, &ledger));
  STRATA_ASSIGN_OR_RETURN(Extent extent, engine->Allocate(run.file_size));
  offload::PinnedHostAllocator pinned(0, &ledger);
  const int64_t slot_bytes = kSlotsPerRequestInFlight * run.queue_depth * run.block_size;
  STRATA_ASSIGN_OR_RETURN(Allocation slots,
                          pinned.Allocate(static_cast<size_t>(slot_bytes), kIoAlignment));
  std::memset(slots.data(), 0x5A, slots.size());
  STRATA_RETURN_IF_ERROR(engine->RegisterBuffer(slots.data(), slot_bytes));
  char* data = static_cast<char*>(slots.data());
  int64_t bytes = 0;
  double elapsed = 0;
  const bool write = run.rw == "write";
  if (!write) {
    STRATA_RETURN_IF_ERROR(Sweep(*engine, extent, data, run, /*write=*/true, 0, &bytes, &elapsed));
  }
  const offload::IoStats before = engine->stats();
  STRATA_RETURN_IF_ERROR(Sweep(*engine, extent, data, run, write, run.seconds, &bytes, &elapsed));
  offload::IoStats stats = engine->stats();  // of the timed sweep
  stats.requests -= before.requests;
  stats.resubmitted -= before.resubmitted;
  std::printf(
      "{\"rw\":\"%s\",\"bytes_per_s\":%.6g,\"bytes\":%lld,\"seconds\":%.6f,\"engine\":\"%s\","
      "\"direct\":%s,\"file_size\":%lld,\"block_size\":%lld,\"queue_depth\":%lld,"
      "\"requests\":%lld,\"resubmitted\":%lld,\"describe\":\"%s\"}\n",
      run.rw.c_str(), static_cast<double>(bytes) / elapsed, static_cast<long long>(bytes), elapsed,
      engine->engine() == offload::IoEngineKind::kUring ? "uring" : "threads",
      engine->direct() ? "true" : "false", static_cast<long long>(run.file_size),
      static_cast<long long>(run.block_size), static_cast<long long>(run.queue_depth),
      static_cast<long long>(stats.requests), static_cast<long long>(stats.resubmitted),
      engine->Describe().c_str());
  engine->Free(extent);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  Flags flags("strata-bench-nvme",
              "sequential reads or writes through the NVMe engine; prints one JSON line");
  std::string dir, file_size = "1G", block_size = "1M", rw, engine = "auto", direct = "auto";
  int64_t queue_depth = 32;
  double seconds = 0;
  flags.Add("dir", &dir, "directory for the swap file (required)");
  flags.Add("file-size", &file_size, "bytes of the file, e.g. 1G");
  flags.Add("block-size", &block_size, "bytes per request, a multiple of 4096, e.g. 1M");
  flags.Add("queue-depth", &queue_depth, {.min = 1, .max = 4096}, "requests in flight");
  flags.Add("rw", &rw, "read | write (required)");
  flags.Add("io-engine", &engine, "auto | uring | threads");
  flags.Add("io-direct", &direct, "auto | on | off (O_DIRECT)");
  flags.Add("seconds", &seconds, {.min = 0, .max = 86400, .zero = "one pass over the file"},
            "run this long, wrapping around the file");
  if (std::optional<int> code = flags.ParseOrExitCode(argc, argv)) return *code;
  auto parse = [&]() -> absl::Status {
    if (dir.empty()) return UsageError("--dir is required");
    if (rw != "read" && rw != "write") {
      return UsageError(absl::StrCat("--rw '", rw, "' is not one of read, write"));
    }
    Run run{.rw = rw, .queue_depth = queue_depth, .seconds = seconds};
    STRATA_ASSIGN_OR_RETURN(run.file_size, ParseBytes("file-size", file_size));
    STRATA_ASSIGN_OR_RETURN(run.block_size, ParseBytes("block-size", block_size));
    IoOptions io;
    io.dir = dir;
    io.block_size = run.block_size;
    io.queue_depth = static_cast<int>(queue_depth);
    absl::StatusOr<offload::IoEngineKind> kind = offload::ParseIoEngineKind(engine);
    if (!kind.ok()) return UsageError(absl::StrCat("--io-engine: ", kind.status().message()));
    absl::StatusOr<offload::DirectIo> d = offload::ParseDirectIo(direct);
    if (!d.ok()) return UsageError(absl::StrCat("--io-direct: ", d.status().message()));
    io.engine = *kind;
    io.direct = *d;
    if (absl::Status s = io.Validate(); !s.ok()) {
      return UsageError(absl::StrCat("--block-size / --queue-depth: ", s.message()));
    }
    if (run.file_size % offload::kIoBlockAlignment != 0) {
      return UsageError(absl::StrCat("--file-size ", run.file_size, " is not a multiple of ",
                                     offload::kIoBlockAlignment));
    }
    return Bench(io, run);
  };
  return flags.ExitCode(parse());
}

}  // namespace
}  // namespace strata::examples

int main(int argc, char** argv) { return strata::examples::Main(argc, argv); }
