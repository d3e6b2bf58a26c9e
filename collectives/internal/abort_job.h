// Ends the whole job after a collective timed out (Note [collective timeouts]): prints `message`
// on stderr, then MPI_Abort(MPI_COMM_WORLD, exit_code) when MPI is running, so that mpirun ends
// every rank, else exits the process with exit_code.
#pragma once

#include <string>

namespace strata::collectives::internal {

[[noreturn]] void AbortJob(const std::string& message, int exit_code);

}  // namespace strata::collectives::internal
