#include "runtime/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/errno_text.h"

namespace strata {

absl::StatusOr<AtomicFile> AtomicFile::Create(const std::string& path) {
  AtomicFile f;
  f.path_ = path;
  f.tmp_ = path + ".tmp";
  f.fd_ = ::open(f.tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f.fd_ < 0) {
    const int err = errno;  // ENOENT for a missing directory, EACCES, EROFS, ...
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("cannot create ", f.tmp_, ": ", ErrnoText(err)));
  }
  return f;
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept { *this = std::move(other); }

AtomicFile& AtomicFile::operator=(AtomicFile&& other) noexcept {
  if (this != &other) {
    Abandon();
    path_ = std::move(other.path_);
    tmp_ = std::move(other.tmp_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

AtomicFile::~AtomicFile() { Abandon(); }

void AtomicFile::Abandon() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
}

absl::Status AtomicFile::Write(const void* data, size_t n) {
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("writing ", tmp_, ": the file is closed (committed or failed)"));
  }
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

absl::Status AtomicFile::Commit() {
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("committing ", tmp_, ": the file is closed (committed or failed)"));
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
  const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
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
