// Options of the NVMe engine (offload/nvme_engine.h), with their parsers for flags.
//
//   IoOptions io;
//   io.dir = "/mnt/nvme/strata";
//   STRATA_ASSIGN_OR_RETURN(io.engine, ParseIoEngineKind("uring"));   // auto | uring | threads
//   STRATA_ASSIGN_OR_RETURN(io.direct, ParseDirectIo("on"));          // auto | on | off
//   STRATA_RETURN_IF_ERROR(io.Validate());
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace strata::offload {

// kAuto uses io_uring and falls back to the thread pool, announced once on stderr, when the
// kernel refuses io_uring (ENOSYS, EPERM); an explicit kUring that is refused is an error.
enum class IoEngineKind { kAuto, kUring, kThreads };
// kAuto opens with O_DIRECT and falls back to buffered IO, announced once, where the file system
// refuses it (tmpfs); an explicit kOn that is refused is an error.
enum class DirectIo { kAuto, kOn, kOff };

inline constexpr int64_t kIoBlockAlignment = 4096;  // O_DIRECT offsets, lengths and buffers

struct IoOptions {
  std::string dir;                         // where the swap file is made (and unlinked)
  IoEngineKind engine = IoEngineKind::kAuto;
  DirectIo direct = DirectIo::kAuto;
  int64_t block_size = int64_t{1} << 20;   // bytes per request, a multiple of 4096
  int queue_depth = 32;                    // requests in flight
  int threads = 4;                         // workers of the thread-pool engine

  // Errors name the field and its value.
  absl::Status Validate() const;
};

absl::StatusOr<IoEngineKind> ParseIoEngineKind(absl::string_view text);
absl::StatusOr<DirectIo> ParseDirectIo(absl::string_view text);
absl::string_view IoEngineKindName(IoEngineKind kind);
absl::string_view DirectIoName(DirectIo direct);

}  // namespace strata::offload
