#include "runtime/threading.h"

#include <omp.h>

#include <atomic>

#include "cblas.h"

namespace strata {

namespace {

// Note [thread count of other threads]: omp_set_num_threads sets the count for the calling thread
// only; a thread started later (a stream's worker) begins with the process default. The setting is
// kept here as well (RequestedNumThreads), and stream workers apply it before each task.
std::atomic<int> g_num_threads{0};  // 0: never set

}  // namespace

int NumCores() { return omp_get_num_procs(); }

void SetNumThreads(int n) {
  if (n <= 0) n = NumCores();
  g_num_threads.store(n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int NumThreads() { return omp_get_max_threads(); }

namespace internal {
int RequestedNumThreads() { return g_num_threads.load(); }
}  // namespace internal

}  // namespace strata
