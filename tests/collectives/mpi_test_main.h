// The main() of the MPI test binaries (registered with strata_add_mpi_test, run under mpiexec):
// one MpiCommunicator for the whole job, made before the tests, and a job result that fails if
// any rank's tests failed. A test binary links strata_mpi_test_main and defines no main:
//
//   TEST(MyTest, SumsOverRanks) {
//     collectives::MpiCommunicator& comm = testing::JobCommunicator();
//     ...
//   }
//
// Every rank runs every test in the same order, so that collectives match; a rank that skips one
// makes the others time out (20 s) and end the job instead of hanging it.
#pragma once

#include "collectives/mpi_communicator.h"

namespace strata::testing {

collectives::MpiCommunicator& JobCommunicator();

}  // namespace strata::testing
