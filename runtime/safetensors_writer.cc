#include "runtime/safetensors_writer.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/status.h"

namespace strata {
namespace {

std::string SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
  }
  return "?";
}

}  // namespace

absl::StatusOr<SafetensorsWriter> SafetensorsWriter::Create(
    const std::string& path, std::vector<Entry> entries,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    if (e.name == "__metadata__" || !seen.insert(e.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path, ": tensor name '",
                                                     e.name, e.name == "__metadata__"
                                                                 ? "' is reserved"
                                                                 : "' appears twice"));
    }
    const uint64_t bytes = static_cast<uint64_t>(e.shape.numel()) * SizeOf(e.dtype);
    header[e.name] = {{"dtype", SafetensorsDTypeName(e.dtype)},
                      {"shape", std::vector<int64_t>(e.shape.dims().begin(), e.shape.dims().end())},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  const uint64_t header_size = text.size();

  STRATA_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  SafetensorsWriter w(std::move(file));
  w.entries_ = std::move(entries);
  STRATA_RETURN_IF_ERROR(w.file_.Write(&header_size, 8));
  STRATA_RETURN_IF_ERROR(w.file_.Write(text.data(), text.size()));
  return w;
}

absl::Status SafetensorsWriter::Write(const Tensor& t) {
  if (!file_.open()) {
    return absl::FailedPreconditionError(
        absl::StrCat("safetensors file ", path(), ": the writer is closed (committed or failed)"));
  }
  if (next_ == entries_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "safetensors file ", path(), ": all ", entries_.size(), " declared tensors are written"));
  }
  const Entry& e = entries_[next_];
  STRATA_RETURN_IF_ERROR(CheckDefined("SafetensorsWriter", e.name, t));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable("SafetensorsWriter", e.name, t));
  if (t.dtype() != e.dtype || t.shape() != e.shape) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path(), ": tensor '",
                                                   e.name, "' is declared ", DTypeName(e.dtype),
                                                   e.shape.ToString(), ", given ", t.ToString()));
  }
  if (t.is_contiguous()) {
    STRATA_RETURN_IF_ERROR(file_.Write(t.raw_data(), t.nbytes()));
  } else {
    STRATA_ASSIGN_OR_RETURN(const Tensor c, t.Contiguous(DefaultCpuAllocator()));
    STRATA_RETURN_IF_ERROR(file_.Write(c.raw_data(), c.nbytes()));
  }
  ++next_;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Commit() {
  if (!file_.open()) {
    return absl::FailedPreconditionError(
        absl::StrCat("safetensors file ", path(), ": the writer is closed (committed or failed)"));
  }
  if (next_ != entries_.size()) {
    file_.Abandon();
    return absl::FailedPreconditionError(
        absl::StrCat("safetensors file ", path(), ": committed after ", next_, " of ",
                     entries_.size(), " tensors; '", entries_[next_].name, "' was never written"));
  }
  return file_.Commit();
}

}  // namespace strata
