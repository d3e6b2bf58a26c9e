#include "collectives/internal/abort_job.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

namespace strata::collectives::internal {

void AbortJob(const std::string& message, int exit_code) {
  std::fprintf(stderr, "strata: %s\nstrata: aborting the job (exit code %d)\n", message.c_str(),
               exit_code);
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace strata::collectives::internal
