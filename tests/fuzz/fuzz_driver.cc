// The fuzz driver for builds without libFuzzer (g++, CI): replays the target's seeds and every
// file of the given corpus directories, then runs seeded random mutations of them. Everything is
// a function of --seed, so a CI run never fails by chance; a crash, a sanitizer report or an
// allocation over the bound (Note [fuzz allocation bound]) ends the process, after the input
// that caused it is written to --crash-dir.
//
//   safetensors_fuzz_replay --runs 2000 --seed 1 tests/fuzz/corpus/safetensors
//   safetensors_fuzz_replay --seconds 60 --crash-dir tests/fuzz/corpus/safetensors ...
//   safetensors_fuzz_replay --write-seeds DIR        # the target's seeds as files
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_target.h"
#include "tests/util/replace_operator_new.h"

// GCC says __SANITIZE_ADDRESS__, clang __has_feature(address_sanitizer).
#if defined(__SANITIZE_ADDRESS__)
#define STRATA_FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRATA_FUZZ_ASAN 1
#endif
#endif

#if defined(STRATA_FUZZ_ASAN)
#include <sanitizer/common_interface_defs.h>
// The allocation bound under AddressSanitizer (ASAN_OPTIONS may add to these).
extern "C" const char* __asan_default_options() {
  return "max_allocation_size_mb=256:allocator_may_return_null=0";
}
#else
#define STRATA_FUZZ_ASAN 0
#endif

namespace {

namespace fs = std::filesystem;

// The input being run, for the crash handlers.
const std::string* g_current = nullptr;
char g_crash_path[4096] = "";

void SaveCurrent() {
  if (g_current == nullptr || g_crash_path[0] == '\0') return;
  const int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_current->size()) {
    const ssize_t n = ::write(fd, g_current->data() + done, g_current->size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  const char msg[] = "fuzz: the crashing input is saved as ";
  (void)!::write(2, msg, sizeof(msg) - 1);
  (void)!::write(2, g_crash_path, std::strlen(g_crash_path));
  (void)!::write(2, "\n", 1);
}

void OnSignal(int sig) {
  SaveCurrent();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

uint64_t Fnv(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Random edits of the kinds that break loaders: bit flips, boundary bytes and integers (sizes,
// lengths, offsets), inserted and deleted runs, digits in text, pieces of other inputs. Uses
// only rng() so that the sequence is the same with every standard library.
class Mutator {
 public:
  Mutator(uint64_t seed, size_t max_len) : rng_(seed), max_len_(max_len) {}

  std::string Mutate(const std::vector<std::string>& pool) {
    std::string s = pool[Below(pool.size())];
    const int edits = 1 + static_cast<int>(Below(6));
    for (int e = 0; e < edits; ++e) Edit(s, pool);
    if (s.size() > max_len_) s.resize(max_len_);
    return s;
  }

 private:
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  void Edit(std::string& s, const std::vector<std::string>& pool) {
    static const uint64_t kInteresting[] = {0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff,
                                            0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
                                            uint64_t{1} << 32, uint64_t{1} << 40,
                                            0x7fffffffffffffff, ~uint64_t{0}};
    const size_t at = s.empty() ? 0 : Below(s.size());
    switch (Below(9)) {
      case 0:  // flip a bit
        if (!s.empty()) s[at] = static_cast<char>(s[at] ^ (1 << Below(8)));
        break;
      case 1:  // a random byte
        if (!s.empty()) s[at] = static_cast<char>(rng_());
        break;
      case 2: {  // an interesting integer, 1/2/4/8 bytes, either byte order
        const uint64_t v = kInteresting[Below(std::size(kInteresting))];
        const size_t width = size_t{1} << Below(4);
        const bool big = Below(2) == 1;
        for (size_t i = 0; i < width && at + i < s.size(); ++i) {
          const size_t shift = 8 * (big ? width - 1 - i : i);
          s[at + i] = static_cast<char>(shift < 64 ? v >> shift : 0);
        }
        break;
      }
      case 3:  // delete a run
        if (!s.empty()) s.erase(at, 1 + Below(std::min<size_t>(s.size() - at, 64)));
        break;
      case 4: {  // insert random bytes
        std::string run(1 + Below(16), '\0');
        for (char& c : run) c = static_cast<char>(rng_());
        s.insert(std::min(at, s.size()), run);
        break;
      }
      case 5:  // duplicate a run
        if (!s.empty()) s.insert(at, s.substr(at, 1 + Below(64)));
        break;
      case 6: {  // a number in text (JSON sizes, shapes, offsets, flag values)
        static const char* const kNumbers[] = {"0", "-1", "1e308", "nan", "4294967296",
                                               "18446744073709551615", "9223372036854775807",
                                               "-9223372036854775808", "1.5", "[]", "\"\"", "{}"};
        s.insert(std::min(at, s.size()), kNumbers[Below(std::size(kNumbers))]);
        break;
      }
      case 7: {  // splice a piece of another input
        const std::string& other = pool[Below(pool.size())];
        if (!other.empty()) {
          const size_t from = Below(other.size());
          s.insert(std::min(at, s.size()), other.substr(from, 1 + Below(256)));
        }
        break;
      }
      case 8:  // truncate
        s.resize(at);
        break;
    }
  }

  std::mt19937_64 rng_;
  size_t max_len_;
};

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Run(const std::string& input) {
  g_current = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  g_current = nullptr;
}

int Usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s [--runs N] [--seconds S] [--seed S] [--max-len N] [--crash-dir DIR] "
               "[--write-seeds DIR] [CORPUS_DIR...]\n",
               program);
  return 2;
}

}  // namespace

#if !STRATA_FUZZ_ASAN
// The allocation bound without AddressSanitizer (which owns operator new itself).
namespace {
void CheckAllocationBound(std::size_t size) {
  if (size > strata::fuzz::kMaxAllocationBytes) {
    std::fprintf(stderr, "fuzz: operator new of %zu bytes exceeds the bound of %zu bytes "
                 "(Note [fuzz allocation bound])\n", size, strata::fuzz::kMaxAllocationBytes);
    std::abort();
  }
}
}  // namespace
STRATA_REPLACE_OPERATOR_NEW(CheckAllocationBound)
#endif

int main(int argc, char** argv) {
  int64_t runs = 0;
  double seconds = 0;
  uint64_t seed = 1;
  size_t max_len = 1 << 16;
  std::string crash_dir = ".", write_seeds;
  std::vector<fs::path> corpus;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--runs" && (v = next())) runs = std::strtoll(v, nullptr, 10);
    else if (a == "--seconds" && (v = next())) seconds = std::strtod(v, nullptr);
    else if (a == "--seed" && (v = next())) seed = std::strtoull(v, nullptr, 10);
    else if (a == "--max-len" && (v = next())) max_len = std::strtoull(v, nullptr, 10);
    else if (a == "--crash-dir" && (v = next())) crash_dir = v;
    else if (a == "--write-seeds" && (v = next())) write_seeds = v;
    else if (a.rfind("--", 0) == 0) return Usage(argv[0]);
    else corpus.push_back(a);
  }
  std::vector<std::string> pool = strata::fuzz::FuzzSeeds();
  if (!write_seeds.empty()) {
    fs::create_directories(write_seeds);
    for (const std::string& s : pool) {
      char name[32];
      std::snprintf(name, sizeof(name), "seed-%016llx", static_cast<unsigned long long>(Fnv(s)));
      std::ofstream(fs::path(write_seeds) / name, std::ios::binary) << s;
    }
    std::printf("wrote %zu seeds to %s\n", pool.size(), write_seeds.c_str());
    return 0;
  }
  for (const fs::path& dir : corpus) {
    if (!fs::is_directory(dir)) {
      std::fprintf(stderr, "fuzz: corpus %s is not a directory\n", dir.c_str());
      return 2;
    }
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());  // directory order differs between filesystems
    for (const fs::path& f : files) pool.push_back(ReadFile(f));
  }

  std::snprintf(g_crash_path, sizeof(g_crash_path), "%s/crash-%s", crash_dir.c_str(),
                fs::path(argv[0]).filename().c_str());
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, OnSignal);
#if STRATA_FUZZ_ASAN
  __sanitizer_set_death_callback(SaveCurrent);
#endif

  for (const std::string& input : pool) Run(input);
  Mutator mutator(seed, max_len);
  const auto start = std::chrono::steady_clock::now();
  int64_t done = 0;
  auto more = [&] {
    if (seconds > 0) {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds;
    }
    return done < runs;
  };
  while (more()) {
    Run(mutator.Mutate(pool));
    ++done;
  }
  std::printf("%s: replayed %zu inputs, ran %lld mutations (seed %llu), no crash\n",
              fs::path(argv[0]).filename().c_str(), pool.size(), static_cast<long long>(done),
              static_cast<unsigned long long>(seed));
  return 0;
}
