// Timeouts of the MPI backend, end to end: jobs of comm_timeout_helper under mpiexec -n 2 where
// rank 1 never joins an all_reduce. Rank 0 must end the whole job within the timeout, with exit
// code 124 and a message naming the op, its sequence number (the MPI tag), bytes, the peer and the
// elapsed time; without abort the op fails with DeadlineExceeded and the communicator refuses the
// next one. A late rank within the timeout is no failure; too low a thread level is an error.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace {

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
  double seconds = 0;
};

Result RunJob(int ranks, const std::string& args) {
  const std::string command =
      absl::StrCat("ASAN_OPTIONS=detect_leaks=0 ", STRATA_MPIEXEC, " --oversubscribe -n ", ranks, " ", COMM_TIMEOUT_HELPER, " ",
                   args, " 2>&1");
  Result result;
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) result.output += buffer;
  const int status = pclose(pipe);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void ExpectContains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in:\n" << text;
}

TEST(CommTimeoutTest, AMissingRankEndsTheJobWithinTheTimeoutNamingTheOp) {
  const Result r = RunJob(2, "abort 2");
  EXPECT_EQ(r.exit_code, 124) << r.output;
  // 2 s of timeout plus the start and teardown of the job, far from rank 1's 60 s of sleep.
  EXPECT_LT(r.seconds, 30) << r.output;
  ExpectContains(r.output, "all_reduce #2 (f32, 1000 elements, 4000 bytes) timed out on rank 0 of 2");
  ExpectContains(r.output, "(timeout 2 s)");
  ExpectContains(r.output, "MPI tag 2");
  ExpectContains(r.output, "waiting for rank 1 to send 2000 bytes");
  ExpectContains(r.output, "reduce-scatter step 1 of 1");
  ExpectContains(r.output, "aborting the job (exit code 124)");
}

TEST(CommTimeoutTest, WithoutAbortTheOpFailsAndTheCommunicatorRefusesTheNext) {
  const Result r = RunJob(2, "status 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ExpectContains(r.output, "all_reduce: DEADLINE_EXCEEDED collectives: all_reduce #2");
  ExpectContains(r.output, "waiting for rank 1");
  ExpectContains(r.output, "next: FAILED_PRECONDITION collectives: the communicator is unusable "
                           "after an earlier timeout");
}

TEST(CommTimeoutTest, ALateRankWithinTheTimeoutIsNoFailure) {
  const Result r = RunJob(2, "late 4");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ExpectContains(r.output, "all_reduce: OK");
}

TEST(CommTimeoutTest, AThreadLevelBelowSerializedIsRefused) {
  const Result r = RunJob(1, "funneled");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ExpectContains(r.output, "create: FAILED_PRECONDITION collectives: MPI provides "
                           "MPI_THREAD_FUNNELED; the communication thread needs "
                           "MPI_THREAD_SERIALIZED");
}

}  // namespace
