#include "collectives/create_communicator.h"

#include "absl/strings/numbers.h"

#ifdef STRATA_HAVE_MPI
#include <mpi.h>
#endif

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "collectives/single_process_communicator.h"
#include "runtime/status.h"
#ifdef STRATA_HAVE_MPI
#include "collectives/mpi_communicator.h"
#endif
#ifdef STRATA_HAVE_NCCL
#include "collectives/nccl_communicator.h"
#endif

namespace strata::collectives {
namespace {

absl::StatusOr<std::unique_ptr<Communicator>> CreateHost(const CommOptions& options) {
  if (!LaunchedUnderMpi()) {
    STRATA_RETURN_IF_ERROR(ResolveCommTimeout(options).status());  // same errors either way
    return std::unique_ptr<Communicator>(new SingleProcessCommunicator());
  }
#ifdef STRATA_HAVE_MPI
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> mpi, MpiCommunicator::Create(options));
  return std::unique_ptr<Communicator>(std::move(mpi));
#else
  // A rank of a job that would run alone: refuse rather than train every rank on its own.
  return absl::FailedPreconditionError(
      "collectives: this process was started as a rank of an MPI job, and this build has no MPI "
      "backend (configure with -DSTRATA_WITH_MPI=ON)");
#endif
}

}  // namespace

bool LaunchedUnderMpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(name) != nullptr) return true;
  }
#ifdef STRATA_HAVE_MPI
  int initialized = 0;
  MPI_Initialized(&initialized);
  return initialized != 0;
#else
  return false;
#endif
}

int LocalRank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    const char* value = std::getenv(name);
    int rank = 0;
    if (value != nullptr && absl::SimpleAtoi(value, &rank) && rank >= 0) return rank;
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(const CommOptions& options) {
  if (options.device.is_cpu()) return CreateHost(options);
#ifdef STRATA_HAVE_NCCL
  CommOptions host = options;
  host.device = Device::Cpu();
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> bootstrap, CreateHost(host));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> nccl,
                          NcclCommunicator::Create(options, std::move(bootstrap)));
  return std::unique_ptr<Communicator>(std::move(nccl));
#else
  return absl::UnimplementedError(absl::StrCat(
      "collectives: a communicator for ", options.device.ToString(),
      " buffers needs NCCL, and this build has none (configure with the CUDA toolkit and NCCL)"));
#endif
}

}  // namespace strata::collectives
