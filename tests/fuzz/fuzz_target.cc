#include "tests/fuzz/fuzz_target.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace strata::fuzz {
namespace {

class Bounded final : public Allocator {
 public:
  Bounded() : Allocator("fuzz", Device::Cpu(), MemoryTier::kDevice, nullptr) {}

 protected:
  absl::StatusOr<void*> AllocateRaw(size_t bytes, size_t alignment, int64_t in_use) override {
    if (bytes > kMaxAllocationBytes) {
      std::fprintf(stderr, "fuzz: allocation of %zu bytes exceeds the bound of %zu bytes "
                   "(Note [fuzz allocation bound])\n", bytes, kMaxAllocationBytes);
      std::abort();
    }
    void* p = std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment);
    if (p == nullptr) return absl::ResourceExhaustedError("fuzz: out of host memory");
    return p;
  }
  void FreeRaw(void* data, size_t bytes, size_t alignment) override { std::free(data); }
};

}  // namespace

const std::string& TempDir() {
  static const std::string* dir = [] {
    // Memory rather than disk where there is a choice: each input is a file written anew, and
    // ext4 flushes a truncated file's data (auto_da_alloc), which made runs 100x slower.
    const char* tmpdir = std::getenv("TMPDIR");
    const std::filesystem::path base = tmpdir != nullptr && tmpdir[0] != '\0' ? tmpdir
                                       : ::access("/dev/shm", W_OK) == 0
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    std::string pattern = (base / "strata-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("fuzz: mkdtemp");
      std::abort();
    }
    std::atexit([] { std::filesystem::remove_all(TempDir()); });
    return new std::string(pattern);
  }();
  return *dir;
}

std::string WriteInput(const std::string& name, const void* data, size_t size) {
  const std::string path = (std::filesystem::path(TempDir()) / name).string();
  ::unlink(path.c_str());  // a new file, not a truncated one (see TempDir)
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

std::string WriteInput(const std::string& name, const std::string& bytes) {
  return WriteInput(name, bytes.data(), bytes.size());
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Allocator& BoundedAllocator() {
  static Allocator* allocator = new Bounded();
  return *allocator;
}

std::vector<std::string> Split(const std::string& input, size_t parts) {
  std::vector<std::string> out;
  size_t at = 0;
  while (out.size() + 1 < parts) {
    const size_t next = input.find(kSplit, at);
    if (next == std::string::npos) break;
    out.push_back(input.substr(at, next - at));
    at = next + sizeof(kSplit) - 1;
  }
  out.push_back(input.substr(at));
  return out;
}

}  // namespace strata::fuzz
