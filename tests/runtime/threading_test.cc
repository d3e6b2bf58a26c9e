#include "runtime/threading.h"

#include <omp.h>

#include "gtest/gtest.h"

namespace strata {
namespace {

TEST(ThreadingTest, SetNumThreadsControlsOpenMpRegions) {
  SetNumThreads(1);
  EXPECT_EQ(NumThreads(), 1);
  int team = 0;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  EXPECT_EQ(team, 1);
  SetNumThreads(0);  // all cores
  EXPECT_EQ(NumThreads(), NumCores());
  EXPECT_GE(NumCores(), 1);
}

}  // namespace
}  // namespace strata
