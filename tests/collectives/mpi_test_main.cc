#include "tests/collectives/mpi_test_main.h"

#include <mpi.h>

#include <cstdio>
#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace strata::testing {
namespace {
collectives::MpiCommunicator* job_communicator = nullptr;
}  // namespace

collectives::MpiCommunicator& JobCommunicator() { return *job_communicator; }

}  // namespace strata::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  absl::StatusOr<std::unique_ptr<strata::collectives::MpiCommunicator>> comm =
      strata::collectives::MpiCommunicator::Create(
          strata::collectives::CommOptions{.timeout_seconds = 20});
  if (!comm.ok()) {
    std::fprintf(stderr, "%s\n", std::string(comm.status().message()).c_str());
    return 1;
  }
  strata::testing::job_communicator = comm->get();
  const int result = RUN_ALL_TESTS();
  comm->reset();
  // A rank whose tests failed fails the job (mpiexec returns non-zero).
  int worst = result;
  MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
