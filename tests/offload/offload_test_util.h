// Helpers of the offload tests: a temporary directory, a file system mounted for one test (root
// only), and reproducible random bytes.
//
//   TempDir dir;                                   // /tmp/strata-offload-XXXXXX, removed after
//   std::optional<Mount> m = Mount::Make("tmpfs", "size=8m");   // nullopt: not root, skip
//   FillRandom(buffer, bytes, /*seed=*/7);  CheckRandom(buffer, bytes, 7) == -1  (first bad byte)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace strata::offload::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Names in the directory, without "." and "..".
  int Entries() const;

 private:
  std::string path_;
};

// A file system of `type` mounted on a fresh directory for the lifetime of the object.
class Mount {
 public:
  // nullopt with `why` set where mounting is not possible (not root, no such file system).
  static std::optional<Mount> Make(const std::string& type, const std::string& options,
                                   bool read_only, std::string* why);
  Mount(Mount&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  Mount& operator=(Mount&&) = delete;
  ~Mount();
  const std::string& path() const { return path_; }

 private:
  explicit Mount(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Bytes that depend only on (seed, position), fast enough for hundreds of MiB.
void FillRandom(void* data, int64_t bytes, uint64_t seed);
// The first position where `data` differs from FillRandom(seed), or -1.
int64_t FindRandomMismatch(const void* data, int64_t bytes, uint64_t seed);

}  // namespace strata::offload::testing
