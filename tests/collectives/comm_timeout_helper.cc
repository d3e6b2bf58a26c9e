// A job for collectives_timeout_test, run under mpiexec:
//   comm_timeout_helper abort SECONDS     rank 1 never joins an all_reduce; rank 0 must end the
//                                         job (MPI_Abort) with the timeout message
//   comm_timeout_helper status SECONDS    the same without abort: rank 0 prints the Status it got
//                                         and the one of the op after it, then both ranks exit 0
//   comm_timeout_helper late SECONDS      rank 1 joins SECONDS/4 late: no timeout, exit 0
//   comm_timeout_helper funneled          MPI initialized with MPI_THREAD_FUNNELED: Create's error
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "collectives/mpi_communicator.h"

namespace {

using strata::collectives::CommOptions;
using strata::collectives::CommTicket;
using strata::collectives::MpiCommunicator;

void Print(const char* what, const absl::Status& status) {
  std::printf("%s: %s %s\n", what, absl::StatusCodeToString(status.code()).c_str(),
              std::string(status.message()).c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "funneled") {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    absl::StatusOr<std::unique_ptr<MpiCommunicator>> comm = MpiCommunicator::Create({});
    Print("create", comm.status());
    MPI_Finalize();
    return comm.ok() ? 1 : 0;
  }
  if (argc != 3 || (mode != "abort" && mode != "status" && mode != "late")) {
    std::fprintf(stderr, "usage: %s abort|status|late SECONDS | funneled\n", argv[0]);
    return 2;
  }
  const double seconds = std::atof(argv[2]);
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> comm =
      MpiCommunicator::Create(CommOptions{.timeout_seconds = seconds,
                                          .abort_on_timeout = mode == "abort"});
  if (!comm.ok()) {
    Print("create", comm.status());
    return 1;
  }
  std::vector<float> data(1000, 1.f);
  const strata::Tensor t =
      strata::Tensor::Wrap(data.data(), strata::Shape{1000}, strata::DType::kF32,
                           strata::Device::Cpu());
  const int rank = (*comm)->rank();
  if (mode == "late") {
    if (rank == 1) std::this_thread::sleep_for(std::chrono::duration<double>(seconds / 4));
    const absl::Status s = (*comm)->Wait(*(*comm)->AllReduce(t));
    Print("all_reduce", s);
    return s.ok() && data[0] == 2.f ? 0 : 1;
  }
  // Both ranks agree on one barrier first, so that the timed-out op is #2 with MPI tag 2.
  if (!(*comm)->Wait(*(*comm)->Barrier()).ok()) return 1;
  if (rank == 0) {
    const absl::Status s = (*comm)->Wait(*(*comm)->AllReduce(t));  // abort: never returns
    Print("all_reduce", s);
    Print("next", (*comm)->Wait(*(*comm)->Barrier()));
  } else {
    std::this_thread::sleep_for(std::chrono::duration<double>(mode == "abort" ? 60 : 2 * seconds));
  }
  comm->reset();
  MPI_Barrier(MPI_COMM_WORLD);
  return 0;
}
