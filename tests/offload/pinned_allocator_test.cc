// Tests of PinnedHostAllocator: exact kHost accounting against a model kept by the test, the
// locked bytes the kernel reports (VmLck), alignment, the capacity bound, and RLIMIT_MEMLOCK
// refused for real in a child process without CAP_IPC_LOCK.
#include "offload/pinned_allocator.h"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/cpu/kernel_test_util.h"

namespace strata::offload {
namespace {

using strata::testing::ExpectStatus;

// Locked memory of this process in bytes, as the kernel counts it.
int64_t LockedBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmLck:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

TEST(PinnedHostAllocatorTest, AccountingInHostTierIsExactAndPagesAreLocked) {
  MemoryLedger ledger;
  PinnedHostAllocator pinned(0, &ledger);
  EXPECT_EQ(pinned.tier(), MemoryTier::kHost);
  EXPECT_EQ(pinned.capacity(), 0u);
  std::mt19937 rng(7);
  std::vector<Allocation> live;
  int64_t in_use = 0, peak = 0, total = 0, pages = 0;
  const int64_t locked_before = LockedBytes();
  for (int i = 0; i < 300; ++i) {
    // Under 4 MiB live, so that RLIMIT_MEMLOCK's usual 8 MiB holds it without CAP_IPC_LOCK.
    if (!live.empty() && (rng() % 3 == 0 || in_use > (4 << 20))) {
      const size_t k = rng() % live.size();
      in_use -= static_cast<int64_t>(live[k].size());
      pages -= static_cast<int64_t>((live[k].size() + 4095) / 4096);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    } else {
      const size_t bytes = 1 + rng() % (300 * 1024);
      const size_t alignment = size_t{1} << (6 + rng() % 16);  // 64 B .. 2 MiB
      absl::StatusOr<Allocation> a = pinned.Allocate(bytes, alignment);
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_EQ(reinterpret_cast<uintptr_t>(a->data()) % std::max<size_t>(alignment, 4096), 0u);
      std::memset(a->data(), 0x5A, bytes);
      live.push_back(*std::move(a));
      in_use += static_cast<int64_t>(bytes);
      pages += static_cast<int64_t>((bytes + 4095) / 4096);
      ++total;
      peak = std::max(peak, in_use);
    }
    const MemoryUsage u = ledger.usage(MemoryTier::kHost);
    ASSERT_EQ(u.in_use, in_use);
    ASSERT_EQ(u.peak, peak);
    ASSERT_EQ(u.live_allocations, static_cast<int64_t>(live.size()));
    ASSERT_EQ(u.total_allocations, total);
    ASSERT_EQ(LockedBytes() - locked_before, pages * 4096) << "every page locked, then unlocked";
  }
  live.clear();
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 0);
  EXPECT_EQ(LockedBytes(), locked_before);
  EXPECT_EQ(ledger.usage(MemoryTier::kDevice).total_allocations, 0);
}

TEST(PinnedHostAllocatorTest, CapacityBoundsTheBytesAskedFor) {
  MemoryLedger ledger;
  PinnedHostAllocator pinned(1 << 20, &ledger, "staging");
  absl::StatusOr<Allocation> a = pinned.Allocate(600 << 10);
  ASSERT_TRUE(a.ok());
  ExpectStatus(pinned.Allocate(500 << 10).status(), absl::StatusCode::kResourceExhausted,
               {"allocator 'staging': 512000 bytes asked with 614400 bytes in use exceed its "
                "capacity of 1048576 bytes"});
  absl::StatusOr<Allocation> rest = pinned.Allocate((1 << 20) - (600 << 10));
  ASSERT_TRUE(rest.ok()) << "exactly the capacity fits";
  EXPECT_EQ(ledger.usage(MemoryTier::kHost).in_use, 1 << 20);
  a->Reset();
  EXPECT_TRUE(pinned.Allocate(600 << 10).ok()) << "freed bytes count again";
}

// Drops CAP_IPC_LOCK from this process's effective and permitted sets.
bool DropIpcLock() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
  data[CAP_TO_INDEX(CAP_IPC_LOCK)].permitted &= ~CAP_TO_MASK(CAP_IPC_LOCK);
  return syscall(SYS_capset, &header, data) == 0;
}

// In a child process (the capability and the limit must not leak into the other tests): without
// CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 64 KiB, pinning 1 MiB is refused by mlock itself.
TEST(PinnedHostAllocatorTest, MemlockLimitIsNamedWhenMlockRefuses) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    std::string message;
    const rlimit limit{64 << 10, 64 << 10};
    if (!DropIpcLock()) {
      message = "capset failed";
    } else if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
      message = "setrlimit failed";
    } else {
      MemoryLedger ledger;
      PinnedHostAllocator pinned(0, &ledger);
      absl::StatusOr<Allocation> small = pinned.Allocate(16 << 10);
      absl::StatusOr<Allocation> big = pinned.Allocate(1 << 20);
      message = !small.ok() ? "the small block under the limit failed: " + small.status().ToString()
                            : big.status().ToString();
    }
    ssize_t ignored = write(pipe_fds[1], message.data(), message.size());
    (void)ignored;
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string message;
  char chunk[512];
  for (ssize_t n; (n = read(pipe_fds[0], chunk, sizeof chunk)) > 0;) message.append(chunk, n);
  close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(message.find("RESOURCE_EXHAUSTED"), std::string::npos) << message;
  for (const char* part : {"cannot pin 1048576 bytes with 16384 bytes in use",
                           "RLIMIT_MEMLOCK is 65536 bytes (`ulimit -l` 64)", "CAP_IPC_LOCK"}) {
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

}  // namespace
}  // namespace strata::offload
