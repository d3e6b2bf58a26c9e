// Tests of the thread-count setting shared by OpenMP kernels and OpenBLAS.
#include "runtime/threading.h"

#include <omp.h>

#include <thread>

#include "cblas.h"
#include "gtest/gtest.h"

namespace strata {
namespace {

// The size of the team an OpenMP parallel region gets on the calling thread.
int TeamSize() {
  int team = 0;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  return team;
}

class ThreadingTest : public ::testing::Test {
 protected:
  void TearDown() override { SetNumThreads(0); }  // back to the default for later tests
};

TEST_F(ThreadingTest, SetNumThreadsRoundTripsAndControlsParallelRegions) {
  EXPECT_GE(NumCores(), 1);
  for (const int n : {1, 2, 3, 5}) {  // more threads than cores is allowed
    SetNumThreads(n);
    EXPECT_EQ(NumThreads(), n);
    EXPECT_EQ(omp_get_max_threads(), n);
    EXPECT_EQ(TeamSize(), n);
    EXPECT_EQ(openblas_get_num_threads(), n);
  }
}

TEST_F(ThreadingTest, ZeroOrNegativeMeansAllCores) {
  for (const int n : {0, -1, -8}) {
    SetNumThreads(1);
    SetNumThreads(n);
    EXPECT_EQ(NumThreads(), NumCores()) << n;
    EXPECT_EQ(TeamSize(), NumCores()) << n;
    EXPECT_EQ(openblas_get_num_threads(), NumCores()) << n;
  }
}

TEST_F(ThreadingTest, TheRequestedCountIsKeptForOtherThreads) {
  // OpenMP keeps the count per thread; the requested one is kept process-wide so that stream
  // workers can apply it (stream_test checks that they do).
  SetNumThreads(1);
  int requested = 0;
  std::thread([&requested] { requested = internal::RequestedNumThreads(); }).join();
  EXPECT_EQ(requested, 1);
  SetNumThreads(0);
  EXPECT_EQ(internal::RequestedNumThreads(), NumCores());
}

}  // namespace
}  // namespace strata
