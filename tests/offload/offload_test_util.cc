#include "tests/offload/offload_test_util.h"

#include <dirent.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace strata::offload::testing {
namespace {

std::string MakeTempDir() {
  std::string name = "/tmp/strata-offload-XXXXXX";
  if (mkdtemp(name.data()) == nullptr) std::abort();
  return name;
}

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t Word(uint64_t seed, int64_t index) {
  return SplitMix(seed * 0x100000001b3ULL + static_cast<uint64_t>(index));
}

}  // namespace

TempDir::TempDir() : path_(MakeTempDir()) {}
TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

int TempDir::Entries() const {
  int n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(path_)) ++n;
  return n;
}

std::optional<Mount> Mount::Make(const std::string& type, const std::string& options,
                                 bool read_only, std::string* why) {
  if (geteuid() != 0) {
    *why = absl::StrCat("mounting a ", type, " needs root");
    return std::nullopt;
  }
  std::string dir = MakeTempDir();
  if (mount(type.c_str(), dir.c_str(), type.c_str(), read_only ? MS_RDONLY : 0,
            options.empty() ? nullptr : options.c_str()) != 0) {
    *why = absl::StrCat("mount -t ", type, " on ", dir, ": ", std::strerror(errno));
    rmdir(dir.c_str());
    return std::nullopt;
  }
  return Mount(std::move(dir));
}

Mount::~Mount() {
  if (path_.empty()) return;
  umount2(path_.c_str(), MNT_DETACH);
  rmdir(path_.c_str());
}

void FillRandom(void* data, int64_t bytes, uint64_t seed) {
  auto* p = static_cast<unsigned char*>(data);
  for (int64_t i = 0; i < bytes; i += 8) {
    const uint64_t w = Word(seed, i / 8);
    std::memcpy(p + i, &w, static_cast<size_t>(std::min<int64_t>(8, bytes - i)));
  }
}

int64_t FindRandomMismatch(const void* data, int64_t bytes, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (int64_t i = 0; i < bytes; i += 8) {
    const uint64_t w = Word(seed, i / 8);
    const size_t n = static_cast<size_t>(std::min<int64_t>(8, bytes - i));
    if (std::memcmp(p + i, &w, n) != 0) {
      for (size_t k = 0; k < n; ++k) {
        if (p[i + static_cast<int64_t>(k)] != reinterpret_cast<const unsigned char*>(&w)[k]) {
          return i + static_cast<int64_t>(k);
        }
      }
    }
  }
  return -1;
}

}  // namespace strata::offload::testing
