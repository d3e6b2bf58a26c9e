#include "collectives/internal/abort_job.h"

#ifdef STRATA_HAVE_MPI
#include <mpi.h>
#endif

#include <cstdio>
#include <cstdlib>

namespace strata::collectives::internal {

void AbortJob(const std::string& message, int exit_code) {
  std::fprintf(stderr, "strata: %s\nstrata: aborting the job (exit code %d)\n", message.c_str(),
               exit_code);
  std::fflush(stderr);
#ifdef STRATA_HAVE_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
#endif
  std::_Exit(exit_code);
}

}  // namespace strata::collectives::internal
