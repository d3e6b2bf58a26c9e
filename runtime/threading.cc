#include "runtime/threading.h"

#include <omp.h>

#include "cblas.h"

namespace strata {

int NumCores() { return omp_get_num_procs(); }

void SetNumThreads(int n) {
  if (n <= 0) n = NumCores();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int NumThreads() { return omp_get_max_threads(); }

}  // namespace strata
