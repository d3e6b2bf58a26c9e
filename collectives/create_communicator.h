// Picks the backend for this process: under mpirun (or once MPI is initialized) the MPI backend
// for host buffers or NCCL for device buffers, otherwise the single-process one, so that the same
// program runs alone or data-parallel.
//
//   CommOptions options{.timeout_seconds = flags.comm_timeout};
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, CreateCommunicator(options));
//   std::printf("rank %d of %d\n", comm->rank(), comm->world_size());
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "collectives/comm_options.h"
#include "collectives/communicator.h"

namespace strata::collectives {

// True when a launcher started this process as a rank of a job (Open MPI's
// OMPI_COMM_WORLD_SIZE, PMIx's PMIX_RANK, or PMI_RANK / PMI_SIZE as MPICH and Slurm set them),
// or when MPI is already initialized.
bool LaunchedUnderMpi();

// This process's rank among the ranks on its node, as the launcher says
// (OMPI_COMM_WORLD_LOCAL_RANK from Open MPI, SLURM_LOCALID from srun, MPI_LOCALRANKID from
// MPICH); 0 when none does (a process started alone). A rank picks its GPU with it.
int LocalRank();

// options.device cpu: MpiCommunicator when LaunchedUnderMpi(), else SingleProcessCommunicator;
// FailedPrecondition under a launcher in a build without MPI (STRATA_WITH_MPI=OFF).
// cuda:N: NcclCommunicator, bootstrapped over the MPI backend (or a world of one), where this
// build has NCCL; Unimplemented, naming the device, where it does not.
absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(const CommOptions& options);

}  // namespace strata::collectives
