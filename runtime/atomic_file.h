// A file that appears at its path complete or not at all.
//
//   STRATA_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create("out/config.json"));
//   STRATA_RETURN_IF_ERROR(f.Write(text.data(), text.size()));
//   STRATA_RETURN_IF_ERROR(f.Commit());
//
// Note [atomic file writes]: the bytes go to "<path>.tmp" in the same directory; Commit fsyncs
// it, renames it over `path` and fsyncs the directory, so `path` is at every moment either the
// old file or the complete new one, also across a power cut. A file that is destroyed or fails
// before Commit removes its temporary and leaves `path` as it was. Errors name the file and
// errno ("No space left on device (ENOSPC)").
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace strata {

class AtomicFile {
 public:
  // Creates (truncates) "<path>.tmp".
  static absl::StatusOr<AtomicFile> Create(const std::string& path);

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&& other) noexcept;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // without Commit: removes the temporary file

  bool open() const { return fd_ >= 0; }
  // Appends; an error abandons the file (closes and removes the temporary).
  absl::Status Write(const void* data, size_t n);
  // fsync, rename over the path, fsync the directory.
  absl::Status Commit();
  // Closes and removes the temporary file; `path` stays as it was.
  void Abandon();

  const std::string& path() const { return path_; }
  const std::string& temporary_path() const { return tmp_; }

 private:
  AtomicFile() = default;

  std::string path_, tmp_;
  int fd_ = -1;
};

}  // namespace strata
