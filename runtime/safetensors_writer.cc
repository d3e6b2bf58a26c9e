#include "runtime/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
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

// "No space left on device (ENOSPC)": as a person reads it, with the name to search for.
std::string ErrnoText(int error_number) {
  const char* name = strerrorname_np(error_number);
  return absl::StrCat(std::strerror(error_number), " (",
                      name != nullptr ? std::string(name) : absl::StrCat("errno ", error_number),
                      ")");
}

// The directory holding `path`, for the fsync that makes a rename durable.
std::string DirectoryOf(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
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

  SafetensorsWriter w;
  w.path_ = path;
  w.tmp_ = path + ".tmp";
  w.entries_ = std::move(entries);
  w.fd_ = ::open(w.tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w.fd_ < 0) {
    const int err = errno;  // ENOENT for a missing directory, EACCES, EROFS, ...
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("cannot create ", w.tmp_, ": ", ErrnoText(err)));
  }
  STRATA_RETURN_IF_ERROR(w.WriteBytes(&header_size, 8));
  STRATA_RETURN_IF_ERROR(w.WriteBytes(text.data(), text.size()));
  return w;
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& other) noexcept { *this = std::move(other); }

SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&& other) noexcept {
  if (this != &other) {
    Abandon();
    path_ = std::move(other.path_);
    tmp_ = std::move(other.tmp_);
    fd_ = std::exchange(other.fd_, -1);
    entries_ = std::move(other.entries_);
    next_ = other.next_;
  }
  return *this;
}

SafetensorsWriter::~SafetensorsWriter() { Abandon(); }

void SafetensorsWriter::Abandon() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
}

absl::Status SafetensorsWriter::WriteBytes(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t done = ::write(fd_, p, n);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) {
      const int err = done < 0 ? errno : EIO;
      Abandon();
      return absl::DataLossError(absl::StrCat("writing ", tmp_, " failed: ", ErrnoText(err)));
    }
    p += done;
    n -= static_cast<size_t>(done);
  }
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Write(const Tensor& t) {
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("safetensors file ", path_, ": the writer is closed (committed or failed)"));
  }
  if (next_ == entries_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "safetensors file ", path_, ": all ", entries_.size(), " declared tensors are written"));
  }
  const Entry& e = entries_[next_];
  STRATA_RETURN_IF_ERROR(CheckDefined("SafetensorsWriter", e.name, t));
  STRATA_RETURN_IF_ERROR(CheckHostAddressable("SafetensorsWriter", e.name, t));
  if (t.dtype() != e.dtype || t.shape() != e.shape) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path_, ": tensor '", e.name,
                                                   "' is declared ", DTypeName(e.dtype),
                                                   e.shape.ToString(), ", given ", t.ToString()));
  }
  if (t.is_contiguous()) {
    STRATA_RETURN_IF_ERROR(WriteBytes(t.raw_data(), t.nbytes()));
  } else {
    STRATA_ASSIGN_OR_RETURN(const Tensor c, t.Contiguous(DefaultCpuAllocator()));
    STRATA_RETURN_IF_ERROR(WriteBytes(c.raw_data(), c.nbytes()));
  }
  ++next_;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Commit() {
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("safetensors file ", path_, ": the writer is closed (committed or failed)"));
  }
  if (next_ != entries_.size()) {
    const std::string missing = entries_[next_].name;
    const size_t written = next_;
    Abandon();
    return absl::FailedPreconditionError(
        absl::StrCat("safetensors file ", path_, ": committed after ", written, " of ",
                     entries_.size(), " tensors; '", missing, "' was never written"));
  }
  if (::fsync(fd_) != 0) {
    const int err = errno;
    Abandon();
    return absl::DataLossError(absl::StrCat("fsync of ", tmp_, " failed: ", ErrnoText(err)));
  }
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    return absl::DataLossError(absl::StrCat("closing ", tmp_, " failed: ", ErrnoText(err)));
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    return absl::DataLossError(
        absl::StrCat("renaming ", tmp_, " to ", path_, " failed: ", ErrnoText(err)));
  }
  // The rename is durable once the directory is: without this a power cut may lose it.
  const std::string dir = DirectoryOf(path_);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    const int synced = ::fsync(dir_fd);
    const int err = errno;
    ::close(dir_fd);
    // Some file systems cannot fsync a directory (EINVAL); the rename itself has happened.
    if (synced != 0 && err != EINVAL) {
      return absl::DataLossError(absl::StrCat("wrote ", path_, " but fsync of its directory ",
                                              dir, " failed: ", ErrnoText(err)));
    }
  }
  return absl::OkStatus();
}

}  // namespace strata
