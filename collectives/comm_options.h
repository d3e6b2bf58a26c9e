// Options of a Communicator (collectives/communicator.h), shared by every backend.
//
//   CommOptions options;
//   options.timeout_seconds = 60;        // a program's --comm-timeout; 0: STRATA_COMM_TIMEOUT or 300
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, CreateCommunicator(options));
//
// Note [collective timeouts]
// A collective that has not completed `timeout` seconds after it started on this rank's
// communication thread (the MPI progress thread, the NCCL watchdog) means that a peer never
// joined it, joined a different one, or died. Nothing can cancel a collective half done on the
// other ranks, so the rank reports what it was doing (op, sequence number used as the MPI tag,
// dtype, elements, bytes, the peers it was waiting for, elapsed time) on stderr and ends the whole
// job with MPI_Abort, exit code kCommTimeoutExitCode, so that mpirun tears every rank down instead
// of leaving them hanging. Tests that want the Status instead set abort_on_timeout = false: the
// op then fails with DeadlineExceeded and the communicator refuses every later op.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/device.h"

namespace strata::collectives {

inline constexpr double kDefaultCommTimeoutSeconds = 300;
inline constexpr int kCommTimeoutExitCode = 124;  // as coreutils' timeout(1)

// How the MPI backend broadcasts (Note [broadcast on one node] in mpi_communicator.h).
enum class BroadcastAlgorithm {
  kAuto,   // kFlat when every rank shares one node, else kChain
  kChain,  // root -> root+1 -> ... in segments: each rank forwards the buffer once
  kFlat,   // the root sends the whole buffer to every rank
};

struct CommOptions {
  // Per collective, from its start (Note [collective timeouts]). 0 reads STRATA_COMM_TIMEOUT
  // (seconds, > 0) from the environment, else kDefaultCommTimeoutSeconds.
  double timeout_seconds = 0;
  bool abort_on_timeout = true;
  // Where the buffers live: cpu (MPI, or the single-process backend outside mpirun) or cuda:N
  // (NCCL on device N, bootstrapped over MPI).
  Device device = Device::Cpu();
  BroadcastAlgorithm broadcast = BroadcastAlgorithm::kAuto;
};

// The timeout in effect for `options` (above). Errors name the field or the environment variable
// and the value: negative, NaN or infinite seconds, or STRATA_COMM_TIMEOUT that is not a positive
// number.
absl::StatusOr<double> ResolveCommTimeout(const CommOptions& options);

}  // namespace strata::collectives
