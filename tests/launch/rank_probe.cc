// rank_probe: the smallest MPI program that shows a launch worked, for tests/launch/*.py.
//
//   mpirun -np 2 rank_probe                        # each rank: "rank R of N on HOST ...", then
//                                                  # an all-reduce of known data, checked
//   rank_probe --sleep forever                     # every rank sleeps after the check
//   rank_probe --kill-rank 1 --kill-after 1        # rank 1 SIGKILLs itself after 1 s while the
//                                                  # others wait in MPI_Barrier for it
//   rank_probe --block-rank 0                      # rank 0 never enters the barrier: the others
//                                                  # block in it forever
//   rank_probe --exit-rank 1 --exit-code 3         # rank 1 exits 3 after the check
//
// The report line also names the network namespace (/proc/self/ns/net) and the IPv4 addresses
// of the rank's interfaces, so a test can prove ranks ran on different "hosts". The all-reduce
// sums rank-dependent integers held as doubles (exact), so any rank count is checked exactly.
#include <ifaddrs.h>
#include <mpi.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Options {
  double sleep_seconds = 0;  // < 0: forever
  int kill_rank = -1;
  double kill_after = 0;
  int block_rank = -1;
  int exit_rank = -1;
  int exit_code = 0;
};

constexpr char kUsage[] =
    "usage: rank_probe [--sleep SECONDS|forever] [--kill-rank R --kill-after SECONDS] "
    "[--block-rank R] [--exit-rank R --exit-code C]\n";

[[noreturn]] void Usage(const char* message) {
  std::fprintf(stderr, "rank_probe: %s\n%s", message, kUsage);
  std::exit(2);
}

double ParseSeconds(const char* flag, const char* text) {
  if (std::strcmp(text, "forever") == 0) return -1;
  char* end = nullptr;
  errno = 0;
  double value = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || value < 0) {
    std::string message = std::string(flag) + ": '" + text + "' is not a number of seconds >= 0";
    Usage(message.c_str());
  }
  return value;
}

int ParseInt(const char* flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 255) {
    std::string message = std::string(flag) + ": '" + text + "' is not an integer in [0, 255]";
    Usage(message.c_str());
  }
  return static_cast<int>(value);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", kUsage);
      std::exit(0);
    }
    if (i + 1 >= argc) Usage(("missing value for " + flag).c_str());
    const char* value = argv[++i];
    if (flag == "--sleep") {
      options.sleep_seconds = ParseSeconds("--sleep", value);
    } else if (flag == "--kill-rank") {
      options.kill_rank = ParseInt("--kill-rank", value);
    } else if (flag == "--kill-after") {
      options.kill_after = ParseSeconds("--kill-after", value);
    } else if (flag == "--block-rank") {
      options.block_rank = ParseInt("--block-rank", value);
    } else if (flag == "--exit-rank") {
      options.exit_rank = ParseInt("--exit-rank", value);
    } else if (flag == "--exit-code") {
      options.exit_code = ParseInt("--exit-code", value);
    } else {
      Usage(("unknown flag " + flag).c_str());
    }
  }
  return options;
}

void SleepFor(double seconds) {
  if (seconds < 0) {
    for (;;) pause();
  }
  usleep(static_cast<useconds_t>(seconds * 1e6));
}

// "10.77.0.1,172.17.0.2": the IPv4 addresses of the interfaces other than loopback.
std::string Addresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return std::string("(getifaddrs: ") + std::strerror(errno) + ")";
  std::string out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
    if (std::strncmp(text, "127.", 4) == 0) continue;
    if (!out.empty()) out += ",";
    out += text;
  }
  freeifaddrs(list);
  return out.empty() ? "none" : out;
}

std::string NetNamespace() {
  char target[64] = {};
  ssize_t n = readlink("/proc/self/ns/net", target, sizeof target - 1);
  return n > 0 ? std::string(target, n) : "unknown";
}

int Check(int code, const char* what) {
  if (code != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    std::fprintf(stderr, "rank_probe: %s failed: %s\n", what, text);
    std::exit(1);
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = ParseOptions(argc, argv);
  Check(MPI_Init(&argc, &argv), "MPI_Init");
  int rank = 0, size = 0;
  Check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  Check(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::printf("rank %d of %d on %s pid %d netns %s addresses %s\n", rank, size, host, getpid(),
              NetNamespace().c_str(), Addresses().c_str());
  std::fflush(stdout);

  // Element i of rank r is r * 1000 + i; the sum over ranks is 1000 * n(n-1)/2 + n * i.
  constexpr int kCount = 1024;
  std::vector<double> mine(kCount), sum(kCount);
  for (int i = 0; i < kCount; ++i) mine[i] = rank * 1000.0 + i;
  Check(MPI_Allreduce(mine.data(), sum.data(), kCount, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce");
  for (int i = 0; i < kCount; ++i) {
    double expected = 1000.0 * size * (size - 1) / 2 + static_cast<double>(size) * i;
    if (sum[i] != expected) {
      std::fprintf(stderr, "rank_probe: rank %d: all-reduce element %d is %.17g, expected %.17g\n",
                   rank, i, sum[i], expected);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
  std::printf("rank %d allreduce ok (%d doubles)\n", rank, kCount);
  std::fflush(stdout);

  if (rank == options.kill_rank) {
    SleepFor(options.kill_after);
    std::printf("rank %d killing itself\n", rank);
    std::fflush(stdout);
    kill(getpid(), SIGKILL);
  }
  if (options.kill_rank >= 0 || options.block_rank >= 0) {
    if (rank == options.block_rank) SleepFor(-1);
    // Waits for a rank that never comes: only a launcher that ends the job ends this.
    Check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }
  if (options.sleep_seconds != 0) SleepFor(options.sleep_seconds);
  Check(MPI_Finalize(), "MPI_Finalize");
  return rank == options.exit_rank ? options.exit_code : 0;
}
