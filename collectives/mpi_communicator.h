// The MPI backend: host buffers, ring algorithms over MPI_Isend/MPI_Irecv, progressed by one
// communication thread per communicator.
//
//   CommOptions options{.timeout_seconds = 60};
//   STRATA_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> comm, MpiCommunicator::Create(options));
//   STRATA_ASSIGN_OR_RETURN(CommTicket t, comm->AllReduce(grad));
//   STRATA_RETURN_IF_ERROR(comm->Wait(t));
//
// Create initializes MPI if the program has not (and then finalizes it at exit), duplicates
// MPI_COMM_WORLD so that strata's messages never match the program's own, and reads rank and
// world size from it.
//
// Note [MPI thread level]
// Every MPI call of a communicator is made by its communication thread, or by a thread waiting on
// it (Note [the waiting thread helps]), one thread at a time: MPI_THREAD_SERIALIZED is the level
// this needs (FUNNELED is not enough, the thread is not the one that initialized MPI), and the one
// Create requests. It is an error when MPI provides less. A program that calls MPI itself (the
// collectives benchmark does) must not do so while a collective of a communicator is in flight.
//
// Note [rings over point-to-point]
// MPI's non-blocking collectives (MPI_Iallreduce, ...) are progressed by Open MPI 4.1's libnbc,
// which measured at 0.4x the bandwidth of its blocking MPI_Allreduce for 4 MiB and more on this
// project's machines; rings of MPI_Isend/MPI_Irecv polled with MPI_Testall matched or beat it
// (docs/collectives.md). They also know, when a step times out, exactly which peer and which
// message the rank waits for. A ring over N ranks splits the buffer into N chunks (ShardOf):
// all_reduce is a reduce-scatter (N-1 steps, each sending one chunk to the right neighbour and
// adding the one from the left) and an all-gather (N-1 steps forwarding the finished chunks), so
// every rank ends with the same bits; broadcast is a chain from the root, pipelined in segments
// (a sixteenth of the buffer, 128 KiB to 4 MiB); barrier is a dissemination barrier of empty
// messages (ceil(log2 N) rounds). Messages are tagged with the op's sequence number (its ticket,
// modulo MPI_TAG_UB + 1).
//
// Note [broadcast on one node]
// Across nodes a broadcast is the chain above: every link carries the buffer once. On one node
// Open MPI's shared-memory transport copies a large message once, by the receiver pulling it from
// the sender's memory (CMA), so a root that sends the whole buffer to every rank at once costs
// itself little and every rank pulls in parallel, none waiting for another to forward: with 3
// ranks on 2 cores, 1-4 MiB broadcasts measured 0.73-0.86 of MPI_Bcast as a chain and 0.97-1.02
// flat (docs/collectives.md). So BroadcastAlgorithm::kAuto (CommOptions) broadcasts flat when
// MPI_COMM_TYPE_SHARED puts every rank on this node, as in mpirun on one host; the root then
// sends (N-1)S, the other ranks nothing.
//
// Note [the waiting thread helps]
// Handing a collective to the communication thread and its completion back costs two thread
// wake-ups, about 5 us here, which is 5-10% of a 1 MiB all_gather. So a Wait that finds the
// communication thread idle and its ticket still queued runs the queued collectives up to it
// itself, in order, while the communication thread stays out (one thread at a time makes MPI
// calls, as MPI_THREAD_SERIALIZED requires). Collectives nobody waits on yet still progress on
// the communication thread, overlapping the caller's work. A blocking call (Blocking()) does not
// even wake the communication thread when it submits: its own Wait follows at once. Waking it
// anyway cost a context switch per collective, which on two cores shared by two ranks preempts
// the very peer the ring waits for: 1 MiB all_gathers measured 0.90 of MPI_Allgather with the
// wake and 0.98-1.00 without (docs/collectives.md).
#pragma once

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/functional/function_ref.h"
#include "collectives/comm_options.h"
#include "collectives/communicator.h"
#include "collectives/internal/host_staging.h"

namespace strata::collectives {

class MpiCommunicator final : public Communicator {
 public:
  // Errors: MPI already finalized, a thread level below MPI_THREAD_SERIALIZED (naming both),
  // an MPI call that failed (naming it and MPI's error string), or bad options.
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Create(const CommOptions& options);
  // Over the ranks of `base` (duplicated) instead of MPI_COMM_WORLD, e.g. a group that
  // MPI_Comm_split made; collective over `base`. MPI must be initialized (by the program or an
  // earlier Create).
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Create(const CommOptions& options,
                                                                 MPI_Comm base);
  // Runs the collectives still queued, then stops the communication thread and frees the
  // duplicated MPI communicator.
  ~MpiCommunicator() override;

  std::string Describe() const override;
  double timeout_seconds() const { return timeout_seconds_; }

 private:
  struct Step;  // one ring step in flight, for timeout messages

  MpiCommunicator(MPI_Comm comm, int rank, int world_size, int tag_ub, bool flat_broadcast,
                  const CommOptions& options, double timeout_seconds);
  void Submit(internal::CommRequest request) override;
  void RunQueuedUpTo(CommTicket ticket) override;
  void Run();  // the communication thread
  // Runs one collective and completes its ticket; by whichever thread set executing_.
  void RunOne(internal::CommRequest& request);
  absl::Status Execute(const internal::CommRequest& request);
  // What this rank sent for `request`: its ring formula, or the flat broadcast's.
  int64_t BytesSent(const internal::CommRequest& request) const;
  absl::Status RingAllReduce(void* data, int64_t count);
  absl::Status RingReduceScatter(const char* input, char* output, const std::vector<int64_t>& counts);
  absl::Status RingAllGather(const char* input, char* output, const std::vector<int64_t>& counts);
  absl::Status ChainBroadcast(char* data, int64_t bytes, int root);
  absl::Status FlatBroadcast(char* data, int64_t bytes, int root);
  absl::Status DisseminationBarrier();
  // Sends `send_bytes` at `send` to rank `to` and receives `recv_bytes` into `recv` from rank
  // `from` (either may be 0 bytes: no message, unless `empty_messages`), polling until both are
  // done or the op's deadline passed. `meanwhile`, if given, runs once the messages are posted.
  absl::Status Exchange(const char* send, int64_t send_bytes, int to, char* recv,
                        int64_t recv_bytes, int from, const Step& step, bool empty_messages = false,
                        absl::FunctionRef<void()> meanwhile = [] {});
  // Posts one message (pieces of at most kMaxMessageBytes) into requests_ and messages_.
  absl::Status Post(bool is_send, const char* data, int64_t bytes, int peer,
                    bool empty_messages = false);
  // Polls requests_ until all are done or the op's deadline passed.
  absl::Status Complete(const Step& step);
  absl::Status TimedOut(const Step& step);
  char* Scratch(int index, int64_t bytes);

  MPI_Comm comm_;
  const int tag_ub_;
  const bool flat_broadcast_;  // Note [broadcast on one node]
  const CommOptions options_;
  const double timeout_seconds_;

  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::deque<internal::CommRequest> queue_;
  bool executing_ = false;  // a thread runs a collective: only it may call MPI
  bool stopping_ = false;

  // Owned by the thread that set executing_.
  const internal::CommRequest* current_ = nullptr;
  std::chrono::steady_clock::time_point started_, deadline_;
  int tag_ = 0;
  absl::Status broken_;  // after a timeout without abort
  struct Message {  // what requests_[i] is, for timeout messages
    bool is_send;
    int peer;
    int64_t bytes;  // of the whole message, not of this piece
  };
  std::vector<MPI_Request> requests_;
  std::vector<Message> messages_;
  internal::HostStaging staging_;
  std::vector<char> scratch_[2];

  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace strata::collectives
