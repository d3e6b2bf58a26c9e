// The number of threads that CPU kernels (OpenMP) and GEMM (OpenBLAS) use.
//
//   SetNumThreads(0);      // all cores (the default)
//   SetNumThreads(2);      // programs expose this as --threads
//   int n = NumThreads();
//
// OpenBLAS is the OpenMP build, so both share one pool of worker threads.
#pragma once

namespace strata {

// n <= 0 means all cores.
void SetNumThreads(int n);
int NumThreads();  // on the calling thread
int NumCores();

namespace internal {
// The count last given to SetNumThreads (resolved, so never 0 once set), or 0 if it never was.
// OpenMP keeps its count per thread; stream workers apply this one before each task.
int RequestedNumThreads();
}  // namespace internal

}  // namespace strata
