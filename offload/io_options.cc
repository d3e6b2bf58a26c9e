#include "offload/io_options.h"

#include "absl/strings/str_cat.h"

namespace strata::offload {

absl::Status IoOptions::Validate() const {
  if (block_size <= 0 || block_size % kIoBlockAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "io options: block_size = ", block_size, " must be a positive multiple of ",
        kIoBlockAlignment));
  }
  if (queue_depth < 1 || queue_depth > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("io options: queue_depth = ", queue_depth, " must be in [1, 4096]"));
  }
  if (threads < 1 || threads > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("io options: threads = ", threads, " must be in [1, 256]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<IoEngineKind> ParseIoEngineKind(absl::string_view text) {
  if (text == "auto") return IoEngineKind::kAuto;
  if (text == "uring") return IoEngineKind::kUring;
  if (text == "threads") return IoEngineKind::kThreads;
  return absl::InvalidArgumentError(
      absl::StrCat("io engine '", text, "' is not one of auto, uring, threads"));
}

absl::StatusOr<DirectIo> ParseDirectIo(absl::string_view text) {
  if (text == "auto") return DirectIo::kAuto;
  if (text == "on") return DirectIo::kOn;
  if (text == "off") return DirectIo::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("direct io '", text, "' is not one of auto, on, off"));
}

absl::string_view IoEngineKindName(IoEngineKind kind) {
  switch (kind) {
    case IoEngineKind::kAuto: return "auto";
    case IoEngineKind::kUring: return "uring";
    case IoEngineKind::kThreads: return "threads";
  }
  return "unknown";
}

absl::string_view DirectIoName(DirectIo direct) {
  switch (direct) {
    case DirectIo::kAuto: return "auto";
    case DirectIo::kOn: return "on";
    case DirectIo::kOff: return "off";
  }
  return "unknown";
}

}  // namespace strata::offload
